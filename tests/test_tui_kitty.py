"""The app in a real kitty on a virtual X display: Debian 12's kitty is 0.26.5, which cannot show kitty images
placed with unicode placeholders (0.28 added them), so the app must pick half-blocks, say why, and show every
thumbnail. (Kitty graphics as such are checked from the escape sequences, in test_kitty_output.py.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_tui_xterm import MATCH, correlation, downscaled, drawn_image
from tui_support import fake_engine, make_session
from xterm_support import XtermScreen, missing

from hero_tui.graphics import KITTY_PLACEHOLDERS_SINCE, version_tuple

pytestmark = [
    pytest.mark.skipif(missing() is not None, reason=f"no virtual display: {missing()}"),
    pytest.mark.skipif(shutil.which("kitty") is None, reason="kitty is not installed (Debian: apt-get install kitty)"),
]

_CHILD = ("import sys; from pathlib import Path; from hero_tui.launch import run_app; "
          "run_app(Path(sys.argv[1]), None, engine_command=sys.argv[2:])")


def test_kitty_gets_the_method_it_can_show_and_every_thumbnail_shows(tmp_path: Path):
    version = version_tuple(subprocess.run(["kitty", "--version"], capture_output=True, text=True).stdout.split()[1])
    folder = make_session(tmp_path / "session", batch_size=8)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    with XtermScreen(tmp_path) as screen:
        screen.start([sys.executable, "-c", _CHILD, str(folder), *fake_engine(folder)], env, terminal="kitty")
        # every thumbnail in place: each is laid out off screen first, then moved in
        layout = screen.wait_layout(lambda lay: lay.get("screen") == "SessionScreen"
                                    and len([image for image in lay["images"] if "number" in image and image["visible"]]) == 8)
        shot = screen.settled_shot()
        cell = screen.cell_size()
    thumbnails = [image for image in layout["images"] if "number" in image and image["visible"]]
    widgets = {image["widget"] for image in thumbnails}
    if version < KITTY_PLACEHOLDERS_SINCE:
        assert widgets == {"textual_image.widget.HalfcellImage"}
        assert f"kitty {'.'.join(map(str, version))} lacks unicode placeholders" in layout["graphics_note"]
    else:
        assert widgets == {"textual_image.widget.TGPImage"} and not layout["graphics_note"]
    for image in thumbnails:  # pixels, not empty boxes
        score = correlation(downscaled(drawn_image(shot, image["region"], cell)), downscaled(Image.open(image["path"])))
        assert score > MATCH, f"thumbnail {image['number']}: correlation {score:.3f}"
