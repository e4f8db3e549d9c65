import pytest
import torch

from noisyseg.config import NetConfig
from noisyseg.errors import ConfigError
from noisyseg.nets import downsample_factor, net_factory


def test_vnet_is_the_literature_size_and_keeps_the_shape():
    net = net_factory(NetConfig(arch="vnet", channels=[16], features=16), 3, 1, 2)()
    n = sum(p.numel() for p in net.parameters())
    assert 9.3e6 < n < 9.6e6  # the UA-MT / MC-Net V-Net, not MONAI's 45 M one
    assert net(torch.zeros(1, 1, 32, 32, 16)).shape == (1, 2, 32, 32, 16)
    assert downsample_factor(NetConfig(arch="vnet")) == 16


@pytest.mark.parametrize("dims,shape", [(2, (2, 3, 32, 48)), (3, (1, 3, 16, 16, 8))])
def test_unet_features_and_logits(dims, shape):
    net = net_factory(NetConfig(channels=[4, 8, 16], features=6), dims, 3, 4)()
    f, logits = net.forward_with_features(torch.randn(*shape))
    assert f.shape == (shape[0], 6, *shape[2:]) and logits.shape == (shape[0], 4, *shape[2:])
    assert (f >= 0).all()  # features are post-activation


def test_two_factory_calls_give_different_initialisation():
    make = net_factory(NetConfig(channels=[4, 8], features=4), 2, 1, 2)
    a, b = make(), make()
    assert not torch.equal(a.head.weight, b.head.weight)


def test_vnet_is_3d_only():
    with pytest.raises(ConfigError, match="3D"):
        net_factory(NetConfig(arch="vnet"), 2, 1, 2)()
