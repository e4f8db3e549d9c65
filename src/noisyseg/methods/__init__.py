from .base import Method, StepInfo, StepOutput
from .registry import available_methods, get_method_class, register, validate_method

__all__ = ["Method", "StepInfo", "StepOutput", "register", "available_methods", "get_method_class", "validate_method"]
