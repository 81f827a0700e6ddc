"""segmentai_web.vtk_output: VTK's messages printed once, known notices of trame-slicer's views left out."""

from __future__ import annotations

import pytest

pytest.importorskip("vtkmodules.vtkRenderingCore")

from segmentai_web.vtk_output import KNOWN_NOTICES, leaving_out, split_messages  # noqa: E402


def test_split_messages():
    text = ("Warning: In a.cxx, line 1\nobj: first\nsecond line\n\n\n"
            "ERROR: In b.cxx, line 2\nobj: broken\n\n\nGeneric Warning: In c.cxx, line 3\nloose\n\n")
    blocks = split_messages(text)
    assert [b.splitlines()[0] for b in blocks] == ["Warning: In a.cxx, line 1", "ERROR: In b.cxx, line 2",
                                                   "Generic Warning: In c.cxx, line 3"]
    assert "second line" in blocks[0]


def test_known_notice_left_out_and_errors_kept(capfd):
    from vtkmodules.vtkCommonCore import vtkCommand
    from vtkmodules.vtkIOImage import vtkPNGReader
    from vtkmodules.vtkRenderingCore import vtkRenderWindowInteractor

    with leaving_out():
        interactor = vtkRenderWindowInteractor()
        interactor.AddObserver(vtkCommand.WindowResizeEvent, lambda *_: None)  # VTK 9.6's deprecation notice
        reader = vtkPNGReader()  # an error, which must still show (once)
        reader.SetFileName("/no/such/file.png")
        reader.Update()
    err = capfd.readouterr().err
    assert not any(notice in err for notice in KNOWN_NOTICES), err
    assert err.count("/no/such/file.png") == 1, err
