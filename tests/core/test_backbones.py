import pytest
import torch
import torchvision

from napari_pcam.core.errors import ConfigError, WeightsUnavailableError
from napari_pcam.core.models.backbones import Backbone, load_pretrained_state


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_output_stride_16(name):
    net = Backbone(name=name, weights="none").eval()
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 64, 96))
    assert [f.shape[-2:] for f in feats] == [(16, 24), (16, 24), (8, 12), (4, 6), (4, 6)]
    assert feats[-1].shape[1] == net.channels[-1]


def test_dilated_variant_keeps_stride_16():
    net = Backbone(name="resnet18", weights="none", dilate_last=True).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 64, 64))[-1].shape[-2:] == (4, 4)


def test_local_weights_file_is_loaded_and_bn_frozen(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = Backbone(name="resnet18", weights=str(tmp_path / "r18.pth"), in_channels=3)
    assert net.pretrained
    assert torch.equal(net.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    net.train()
    bn = net.layer1[0].bn1
    assert not bn.training and not bn.weight.requires_grad


def test_from_scratch_batchnorm_trains():
    net = Backbone(name="resnet18", weights="none").train()
    assert net.layer1[0].bn1.training and net.layer1[0].bn1.weight.requires_grad


def test_pretrained_first_conv_adapts_to_channels(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = Backbone(name="resnet18", weights=str(tmp_path / "r18.pth"), in_channels=1)
    expected = ref.conv1.weight.mean(1, keepdim=True) * 3
    assert torch.allclose(net.stem[0].weight, expected)


def test_offline_imagenet_error_says_how_to_provide_the_file(monkeypatch):
    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError, match=r"--weights /path/to/resnet18-.*\.pth"):
        load_pretrained_state("resnet18", "imagenet")


def test_missing_or_corrupt_weights_file(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_pretrained_state("resnet18", str(tmp_path / "nope.pth"))
    (tmp_path / "bad.pth").write_bytes(b"xx")
    with pytest.raises(WeightsUnavailableError, match="not a readable"):
        load_pretrained_state("resnet18", str(tmp_path / "bad.pth"))


def test_unknown_backbone():
    with pytest.raises(ConfigError, match="resnet18, resnet34, resnet50, resnet101"):
        Backbone(name="vgg", weights="none")


def test_dilated_resnet50_equals_torchvision_dilation():
    torch.manual_seed(0)
    ours = Backbone(name="resnet50", weights="none", dilate_last=True).eval()
    ref = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, False, True]).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    renamed = {("stem.0." + k[6:] if k.startswith("conv1.") else "stem.1." + k[4:] if k.startswith("bn1.") else k): v
               for k, v in state.items()}
    ours.load_state_dict(renamed)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref.layer4(ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))
        assert torch.allclose(ours(x)[-1], expected, atol=1e-5)
