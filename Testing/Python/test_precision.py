"""``--precision bfloat16``: the forward passes in oneDNN's bfloat16 where the CPU runs it natively.

The label map must stay what float32 gives up to boundary voxels (the default brain model on a
generated head: Dice ≥ 0.99 against float32), the choice must last one job only, and a device that
cannot run it gets one line, before any work.
"""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.errors import InputError
from segmentai_core.inference import precision as precision_module
from segmentai_core.inference.engine import Segmenter
from segmentai_core.inference.precision import check_precision, current_precision, network_precision


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def test_the_choice_lasts_one_job():
    assert current_precision() == "float32"
    with network_precision("bfloat16"):
        assert current_precision() == "bfloat16"
    assert current_precision() == "float32"


def test_unknown_or_unsupported_precision_is_one_line(monkeypatch, default_package):
    with pytest.raises(InputError, match="not one of float32, bfloat16"):
        check_precision("float16", "cpu")
    monkeypatch.setattr(precision_module, "bfloat16_supported", lambda: False)
    with pytest.raises(InputError) as raised:
        Segmenter(default_package, device="cpu", precision="bfloat16")
    assert "AMX or AVX-512 BF16" in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.skipif(not precision_module.bfloat16_supported(), reason="this CPU has no native bfloat16")
def test_bfloat16_labels_match_float32(default_package):
    from segmentai_core.phantoms import head_phantom

    volume = head_phantom(seed=3)[0]
    exact = Segmenter(default_package, device="cpu").segment(volume)
    fast = Segmenter(default_package, device="cpu", precision="bfloat16").segment(volume)
    assert fast.labelmap.geometry == exact.labelmap.geometry
    assert _dice(fast.labelmap.array > 0, exact.labelmap.array > 0) >= 0.99
    assert any("bfloat16" in note for note in fast.notes)
    assert not any("bfloat16" in note for note in exact.notes)


def test_cli_refuses_bfloat16_where_unsupported_and_writes_nothing(monkeypatch, tmp_path, capsys):
    from segmentai_core.cli.main import main
    from segmentai_core.io import write_volume
    from segmentai_core.phantoms import head_phantom

    image = tmp_path / "head.nrrd"
    write_volume(head_phantom(seed=5, shape=(48, 56, 48))[0], image)
    monkeypatch.setattr(precision_module, "bfloat16_supported", lambda: False)
    output = tmp_path / "head.seg.nrrd"
    code = main(["segment", str(image), "-o", str(output), "--device", "cpu", "--precision", "bfloat16", "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and "AMX or AVX-512 BF16" in error and "Traceback" not in error
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["head.nrrd"]
