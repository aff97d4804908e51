"""Deforum files with Video Input mode, hybrid video and optical flow: read, not listed as unsupported."""
import pytest

from deforum_engine.errors import SettingsError
from deforum_engine.config.importers.deforum import import_deforum
from deforum_engine.config.settings import validate_settings
from deforum_engine.video.flow import raft_available


def deforum_file(**keys) -> dict:
    return {"animation_mode": "2D", "W": 512, "H": 512, "max_frames": 30, **keys}


def test_video_input_file_maps_every_video_setting():
    result = import_deforum(deforum_file(
        animation_mode="Video Input", video_init_path="clips/dance.mp4", extract_nth_frame=2, extract_from_frame=3,
        extract_to_frame=40, overwrite_extracted_frames=True, add_soundtrack="Init Video",
        color_coherence="Video Input", color_coherence_video_every_N_frames=4, diffusion_redo="2"), "dance.txt")
    s = result.settings
    assert s["animation_mode"] == "Video Input" and s["video_init_path"] == "clips/dance.mp4"
    assert (s["extract_nth_frame"], s["extract_from_frame"], s["extract_to_frame"]) == (2, 3, 40)
    assert s["color_coherence"] == "Video Input" and s["color_coherence_video_every_N_frames"] == 4
    assert s["diffusion_redo"] == 2
    settings = validate_settings(s)
    assert settings.add_soundtrack and str(settings.soundtrack_path) == "clips/dance.mp4"
    assert not {"video_init_path", "overwrite_extracted_frames", "add_soundtrack"} & set(result.ignored)
    assert not any("Video Input" in note or "unsupported" in note for note in result.notes)


def test_hybrid_file_maps_and_notes_what_cannot_run_here():
    result = import_deforum(deforum_file(
        video_init_path="in.mp4", hybrid_composite=True, hybrid_motion="Optical Flow", hybrid_flow_method="RAFT",
        hybrid_comp_mask_type="difference", hybrid_comp_mask_equalize="Both", hybrid_comp_alpha_schedule="0:(0.8)",
        hybrid_generate_human_masks="PNGs", hybrid_generate_inputframes=True, optical_flow_cadence=True,
        optical_flow_redo_generation="Farneback", cadence_flow_factor_schedule="0: (1)"), "hybrid.txt")
    s, notes = result.settings, " ".join(result.notes)
    assert (s["hybrid_composite"], s["hybrid_motion"]) == ("Normal", "Optical Flow")  # legacy true -> Normal
    assert (s["hybrid_comp_mask_type"], s["hybrid_comp_mask_equalize"]) == ("Difference", "Both")
    assert s["optical_flow_cadence"] == "DIS Fine" and s["optical_flow_redo_generation"] == "Farneback"
    assert s["hybrid_comp_alpha_schedule"] == "0:(0.8)"
    assert "hybrid_generate_human_masks 'PNGs': human masks need a segmentation model download" in notes
    if not raft_available():
        assert s["hybrid_flow_method"] == "DIS Fine"
        assert "hybrid_flow_method 'RAFT' needs torchvision, which is not installed here: using 'DIS Fine'" in notes
    assert "switched on in the file, but the engine does not have them" not in notes
    assert not [key for key in result.ignored if key.startswith(("hybrid", "optical", "video"))]
    validate_settings(s)


@pytest.mark.parametrize("keys, message", [
    ({"animation_mode": "Video Input"}, "video_init_path = None: the input video is switched on but has no path"),
    ({"animation_mode": "Video Input", "video_init_path": "https://deforum.github.io/a1/V1.mp4"},
     "URLs are not fetched"),
    ({"hybrid_motion": "Sideways", "video_init_path": "a.mp4"}, "hybrid_motion = 'Sideways': expected one of"),
])
def test_unusable_video_values_name_the_file_and_key(keys, message):
    with pytest.raises(SettingsError, match=message):
        import_deforum(deforum_file(**keys), "v.txt")


def test_native_raft_is_kept_and_hybrid_needs_a_clip():
    assert validate_settings({"hybrid_flow_method": "RAFT"}).hybrid_flow_method == "RAFT"
    with pytest.raises(SettingsError, match="hybrid video need video_init_path"):
        validate_settings({"hybrid_motion": "Affine"})


def test_human_masks_in_a_native_file_warn_that_they_are_not_made():
    from deforum_engine.config.settings import IgnoredSettingsWarning
    with pytest.warns(IgnoredSettingsWarning, match="hybrid_generate_human_masks 'PNGs': human masks need a segmentation"):
        validate_settings({"hybrid_generate_human_masks": "PNGs"})
