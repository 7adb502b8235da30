"""P3M-FCP: only the chosen encoder layers change, only inside the downsampled face mask."""

from __future__ import annotations

import pytest
import torch

from p3m_lightning.methods.p3m_net.network import P3MNet
from p3m_lightning.models.feature_copy_paste import FeatureCopyPaste, downsample_mask


def _capture(net: P3MNet, names: list[str]) -> tuple[dict[str, torch.Tensor], list]:
    seen: dict[str, torch.Tensor] = {}
    modules = dict(net.encoder.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, out.detach().clone())
        )
        for name in names
    ]
    return seen, handles


@pytest.fixture(scope="module")
def setup() -> tuple[P3MNet, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = P3MNet().eval()
    image, source = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 16:40, 20:44] = 1  # the second sample has no paste drawn
    return net, image, source, mask


def test_only_the_chosen_layer_changes_and_only_inside_the_mask(setup) -> None:
    net, image, source, mask = setup
    names = ["layer1", "layer2", "layer3"]
    fcp = FeatureCopyPaste(["layer2"])
    with torch.no_grad():
        plain, handles = _capture(net, names)
        net(image)
        for h in handles:
            h.remove()
        src = fcp.source_features(net.encoder, source)["layer2"]
        pasted, handles = _capture(net, names)
        out = fcp(net, image, source, mask)
        for h in handles:
            h.remove()
    # layer1 runs before the pasted layer: untouched.
    torch.testing.assert_close(pasted["layer1"], plain["layer1"], rtol=0, atol=0)
    inside = downsample_mask(mask, tuple(plain["layer2"].shape[-2:])).bool().expand_as(src)
    assert inside[0].any() and not inside[1].any()
    torch.testing.assert_close(pasted["layer2"][inside], src[inside], rtol=0, atol=0)
    torch.testing.assert_close(pasted["layer2"][~inside], plain["layer2"][~inside], rtol=0, atol=0)
    # Deeper layers see the pasted features; the sample without a mask is unchanged.
    assert not torch.equal(pasted["layer3"][0], plain["layer3"][0])
    torch.testing.assert_close(pasted["layer3"][1], plain["layer3"][1], rtol=0, atol=0)
    with torch.no_grad():
        reference = net(image)
    torch.testing.assert_close(out["fusion"][1], reference["fusion"][1], rtol=0, atol=0)


def test_detached_source_gives_no_gradient_to_the_source(setup) -> None:
    net, image, source, mask = setup
    source = source.clone().requires_grad_(True)
    for detach, expect_grad in ((True, False), (False, True)):
        source.grad = None
        out = FeatureCopyPaste(["layer1"], detach=detach)(net, image, source, mask)
        out["local"].sum().backward()
        assert (source.grad is not None and source.grad.abs().sum() > 0) == expect_grad


def test_unknown_layer_names_the_encoder_children(setup) -> None:
    net, image, source, mask = setup
    with pytest.raises(ValueError, match="layer4"):
        FeatureCopyPaste(["layer9"])(net, image, source, mask)
    with pytest.raises(ValueError, match="at least one"):
        FeatureCopyPaste([])
