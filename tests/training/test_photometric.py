"""The photometric jitter changes light colour, haze, focus and noise, repeats with its seed, and is off at 0."""
import torch

from pipeline.training.photometric import PhotometricJitter


def _pictures() -> torch.Tensor:
    return torch.rand((16, 3, 48, 64), generator=torch.Generator().manual_seed(5)) * 0.8 + 0.1


def test_strength_zero_leaves_the_pictures_as_they_are():
    pictures = _pictures()
    assert torch.equal(PhotometricJitter(0.0)(pictures), pictures)


def test_it_changes_some_pictures_keeps_them_in_range_and_repeats_with_its_seed():
    pictures = _pictures()
    jittered = PhotometricJitter(1.0, seed=3)(pictures)
    assert jittered.shape == pictures.shape and jittered.min() >= 0 and jittered.max() <= 1
    changed = (jittered - pictures).abs().mean(dim=(1, 2, 3)) > 1e-3
    assert 0 < changed.sum() < len(pictures)  # each change is applied to a share of the pictures, not all
    assert torch.equal(jittered, PhotometricJitter(1.0, seed=3)(pictures))
    assert not torch.equal(jittered, PhotometricJitter(1.0, seed=4)(pictures))


def test_a_colour_cast_moves_the_channels_apart():
    grey = torch.full((64, 3, 8, 8), 0.5)
    jittered = PhotometricJitter(1.0, seed=0)(grey)
    spread = jittered.mean(dim=(2, 3)).max(dim=1).values - jittered.mean(dim=(2, 3)).min(dim=1).values
    assert (spread > 0.02).any()  # some pictures' red, green and blue no longer match
