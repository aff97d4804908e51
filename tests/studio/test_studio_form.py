"""The studio form's API (issue 21): schedules drawn from the plan with errors at their keyframe, the
form's choices, preset clips on the user's own picture."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the studio's extra is not installed (pip install -e '.[studio]')")

from deforum_engine.output import probe_video  # noqa: E402
from studio_helpers import encoded, picture  # noqa: E402
from studio_client import studio, upload  # noqa: E402


def test_curves_are_the_plans_values_and_a_broken_keyframe_is_named(tmp_path):
    with studio(tmp_path / "data") as client:
        answer = client.post("/api/plan/curves", json={
            "max_frames": 6, "zoom": "0:(1.0), 5:(1.5)", "angle": "0:(2), 3:(2 +)", "motion_preset": "spiral_in"})
        assert answer.status_code == 200
        body = answer.json()
        assert body["frames"] == 6 and body["step"] == 1
        assert body["curves"]["zoom"] == [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
        assert body["errors"]["angle"].startswith('angle: keyframe 2 ("3:(2 +)")')
        assert body["curves"]["angle"] == [1.2] * 6  # while broken, drawn as the preset has it
        camera = client.post("/api/plan/curves", json={"max_frames": 4, "animation_mode": "3d",
                                                        "translation_z": "0:(t)"}).json()
        assert camera["curves"]["translation_z"] == [0, 1, 2, 3] and camera["errors"] == {}
        long = client.post("/api/plan/curves", json={"max_frames": 5000}).json()
        assert long["step"] == 3 and len(long["curves"]["zoom"]) == 1667
        wrong = client.post("/api/plan/curves", json={"max_frames": 5, "W": 3})
        assert wrong.status_code == 422 and "W" in wrong.json()["error"]


def test_the_options_carry_the_forms_choices_and_defaults(tmp_path):
    with studio(tmp_path / "data") as client:
        options = client.get("/api/options").json()
    assert "Euler a" in options["choices"]["sampler"] and "ladder" in options["choices"]["seed_behavior"]
    assert options["choices"]["border"] == ["replicate", "wrap", "reflect"]
    assert options["form_defaults"]["strength_schedule"] == "0:(0.65)"
    assert options["form_defaults"]["animation_mode"] == "2D"


def test_a_preset_clip_plays_on_the_users_picture(tmp_path):
    with studio(tmp_path / "data") as client:
        stored = upload(client, "init_image", encoded(picture(96, 96, seed=2))).json()
        on_default = client.get("/api/presets/zoom_in/preview.mp4")
        on_picture = client.get(f"/api/presets/zoom_in/preview.mp4?picture={stored['id']}")
        assert on_default.status_code == on_picture.status_code == 200
        assert on_default.content != on_picture.content
        path = tmp_path / "clip.mp4"
        path.write_bytes(on_picture.content)
        assert probe_video(path)["frames"] == 45
        prompt = upload(client, "image_prompt", encoded(picture(96, 96, seed=3))).json()
        assert client.get(f"/api/presets/zoom_in/preview.mp4?picture={prompt['id']}").status_code == 200
