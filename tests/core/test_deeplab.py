"""DeepLabv3+ network: shapes, output stride, parameter counts, BatchNorm policy."""

import pytest
import torch

from napari_pcam.core.models.deeplab import DeepLabV3Plus, count_parameters


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_output_matches_odd_input_size(backbone):
    torch.manual_seed(0)
    model = DeepLabV3Plus(backbone=backbone, weights="none", num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 65, 97))
    assert out.shape == (1, 5, 65, 97)
    assert torch.isfinite(out).all()


def test_encoder_has_output_stride_16_with_dilated_layer4():
    model = DeepLabV3Plus(backbone="resnet18", weights="none", num_classes=3).eval()
    with torch.no_grad():
        feats = model.encoder(torch.randn(1, 3, 64, 96))
    assert [f.shape[-2:] for f in feats] == [(16, 24), (16, 24), (8, 12), (4, 6), (4, 6)]
    assert model.encoder.layer4[1].conv1.dilation == (2, 2)


def test_grayscale_input_and_training_mode_batch_of_two():
    model = DeepLabV3Plus(backbone="resnet18", weights="none", in_channels=1, num_classes=2).train()
    out = model(torch.randn(2, 1, 48, 48))
    out.mean().backward()
    assert out.shape == (2, 2, 48, 48)
    assert model.decoder.classifier.weight.grad is not None


def test_resnet50_parameter_count_is_close_to_published_deeplabv3plus():
    # Published DeepLabv3+ ResNet-50 models (21 VOC classes) have about 40 M parameters.
    model = DeepLabV3Plus(backbone="resnet50", weights="none", num_classes=21)
    n = count_parameters(model)
    assert 39.5e6 < n < 41.5e6
    head = sum(p.numel() for p in model.head_parameters())
    assert 16e6 < head < 17.5e6  # ASPP (~15.5 M) + decoder (~1.3 M)


def test_bn_trains_by_default_and_can_follow_weights():
    model = DeepLabV3Plus(backbone="resnet18", weights="none", num_classes=2)
    assert not model.encoder.freeze_bn
    model.train()
    assert model.encoder.stem[1].training


def test_too_few_classes_is_an_error():
    with pytest.raises(ValueError, match="num_classes"):
        DeepLabV3Plus(backbone="resnet18", weights="none", num_classes=1)


def test_untrained_model_starts_near_uniform_class_scores():
    # A small final layer keeps the first cross-entropy close to log(K) instead of several times that.
    torch.manual_seed(0)
    model = DeepLabV3Plus(backbone="resnet18", weights="none", num_classes=4).train()
    logits = model(torch.randn(2, 3, 64, 64))
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 4, (2, 64, 64)))
    assert loss.item() < 1.5 * torch.log(torch.tensor(4.0)).item()


def test_group_head_norm_has_no_batchnorm_outside_the_encoder_and_trains_on_single_crops():
    torch.manual_seed(0)
    model = DeepLabV3Plus(backbone="resnet18", weights="none", num_classes=3, head_norm="group").train()
    head = [*model.aspp.modules(), *model.decoder.modules()]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in head)
    groups = {m.num_channels: m.num_groups for m in head if isinstance(m, torch.nn.GroupNorm)}
    assert groups == {256: 32, 48: 24}
    out = model(torch.randn(1, 3, 48, 48))  # BatchNorm's image-pooling branch would refuse a batch of 1
    out.mean().backward()
    assert model.decoder.classifier.weight.grad is not None


def test_group_head_norm_gives_the_same_scores_in_training_and_eval_mode_without_encoder_batchnorm():
    # GroupNorm has no running statistics: with the encoder's BatchNorm frozen (and ASPP's dropout off) the
    # two modes agree exactly, while BatchNorm's batch statistics make them differ.
    torch.manual_seed(0)
    model = DeepLabV3Plus(backbone="resnet18", weights="none", num_classes=3, head_norm="group", freeze_bn=True)
    x = torch.randn(2, 3, 48, 48)

    def both_modes(net):
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        with torch.no_grad():
            return net.train()(x), net.eval()(x)

    torch.testing.assert_close(*both_modes(model))
    torch.manual_seed(0)
    batchnorm = DeepLabV3Plus(backbone="resnet18", weights="none", num_classes=3, head_norm="batch", freeze_bn=True)
    train_out, eval_out = both_modes(batchnorm)
    assert not torch.allclose(train_out, eval_out, atol=1e-3)


def test_unknown_head_norm_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="'batch', 'group'"):
        DeepLabV3Plus(backbone="resnet18", weights="none", num_classes=2, head_norm="layer")
