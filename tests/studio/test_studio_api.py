"""The studio's HTTP API through the real app (FastAPI TestClient): uploads, documents, jobs, streams.

Renders are motion previews (the preview backend) unless a test needs the model; then the tiny SD
pipeline from tests/tiny_models.py, loaded through the real loading code.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the studio's extra is not installed (pip install -e '.[studio]')")


from deforum_engine import cli  # noqa: E402
from deforum_engine.errors import SettingsError  # noqa: E402
from deforum_engine.frame.images import check_image_file  # noqa: E402
from deforum_engine.output import RenderFolder, probe_video  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402
from studio_client import studio, upload  # noqa: E402
from studio_helpers import (  # noqa: E402
    build_tiny_sd_with_checker, encoded, flagged_picture, picture, png_bomb, read_frames, wait_for_job,
)

SMALL = {"W": 64, "H": 64, "fps": 10}


def status_of(client, job_id: str):
    return lambda: client.get(f"/api/jobs/{job_id}").json()


def events(client, job_id: str) -> list[tuple[str, dict]]:
    """Every server-sent event of a job's stream, until the stream ends with the job."""
    received, name = [], None
    with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                received.append((name, json.loads(line[len("data: "):])))
    return received


# ----------------------------------------------------------------------------------------- a render


def test_preview_render_streams_frames_and_gives_a_video_a_zip_and_a_settings_file(tmp_path):
    with studio(tmp_path / "data") as client:
        stored = upload(client, "image_prompt", encoded(picture(80, 60)), "my cat.png")
        assert stored.status_code == 201, stored.text
        image_prompt = stored.json()
        assert image_prompt["filename"] == "my cat.png" and image_prompt["kind"] == "image_prompt"
        document = {**SMALL, "max_frames": 12, "prompts": {"0": "a cat in a garden"}, "motion_preset": "zoom_in",
                    "image_prompt": image_prompt["id"], "image_prompt_influence": "high", "seed": 5}
        created = client.post("/api/jobs", json=document)
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["status"] in ("queued", "running") and job["preview"] and job["frames"] == 12

        stream = events(client, job["id"])
        names = [name for name, _ in stream]
        assert names[-1] == "end" and stream[-1][1]["status"] == "finished"
        frames_seen = [data["index"] for name, data in stream if name == "frame"]
        assert frames_seen and frames_seen == sorted(frames_seen) and frames_seen[-1] == 11
        last_status = [data for name, data in stream if name == "status"][-1]
        assert last_status["status"] == "finished" and last_status["frames_done"] == 12

        folder = RenderFolder(Path(last_status["folder"]))
        assert folder.root.parent == (tmp_path / "data" / "renders").resolve()
        assert folder.status() == "finished" and folder.frame_indices() == list(range(12))
        video = client.get(f"/api/jobs/{job['id']}/video")
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        saved = tmp_path / "downloaded.mp4"
        saved.write_bytes(video.content)
        probe = probe_video(saved)
        assert (probe["frames"], probe["width"], probe["height"], probe["codec"]) == (12, 64, 64, "h264")

        archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{job['id']}/frames.zip").content))
        assert len(archive.namelist()) == 12
        assert archive.read(archive.namelist()[3]) == folder.frame_path(3).read_bytes()
        frame = client.get(f"/api/jobs/{job['id']}/frames/3")
        assert frame.headers["content-type"] == "image/png" and frame.content == folder.frame_path(3).read_bytes()
        watched = client.get([data["url"] for name, data in stream if name == "frame"][-1])  # what the page shows
        assert watched.headers["content-type"] == "image/jpeg"
        shown = np.asarray(Image.open(io.BytesIO(watched.content)), float)
        errors = [np.abs(shown - frame).mean() for frame in read_frames(folder.root)]
        assert int(np.argmin(errors)) == 11 and errors[11] < 10  # frame 11 (JPEG: close, not exact)
        assert client.get(f"/api/jobs/{job['id']}/frames/3?format=gif").status_code == 422

        settings = client.get(f"/api/jobs/{job['id']}/settings").json()
        assert settings["image_prompt_influence"] == "high" and settings["motion_preset"] == "zoom_in"
        assert Path(settings["image_prompt"]).parent == (tmp_path / "data" / "uploads").resolve()
        assert settings["zoom"] == "0:(1.02)" and settings["seed"] == 5

    # The settings file renders unchanged with the CLI, to the same frames.
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(settings))
    assert cli.main(["render", str(settings_file), "--preview", "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(tmp_path / "cli"), read_frames(folder.root), strict=True))


def test_a_settings_file_loaded_back_renders_the_same_frames(tmp_path):
    with studio(tmp_path / "data") as client:
        image_prompt = upload(client, "image_prompt", encoded(picture(seed=2))).json()["id"]
        first = client.post("/api/jobs", json={**SMALL, "max_frames": 6, "motion_preset": "rotate_cw",
                                               "image_prompt": image_prompt}).json()
        wait_for_job(status_of(client, first["id"]))
        settings = client.get(f"/api/jobs/{first['id']}/settings").json()
        # What the page does with a loaded file: its stored file paths become upload ids again.
        settings["image_prompt"] = Path(settings["image_prompt"]).stem
        again = client.post("/api/jobs", json=settings)
        assert again.status_code == 201, again.text
        wait_for_job(status_of(client, again.json()["id"]))
        frames = [read_frames(Path(client.get(f"/api/jobs/{j}").json()["folder"])) for j in (first["id"], again.json()["id"])]
    assert len(frames[0]) == 6 and all(np.array_equal(a, b) for a, b in zip(*frames, strict=True))


def test_deforum_settings_are_accepted_and_what_they_ignore_is_listed(tmp_path):
    deforum = {"animation_mode": "2D", "max_frames": 5, "W": 64, "H": 64, "use_init": False,
               "init_image": "https://deforum.github.io/a1/I1.png", "animation_prompts": {"0": "a forest"},
               "diffusion_cadence": "2", "hybrid_flow_method": "RAFT", "restore_faces": True, "seed": 3}
    with studio(tmp_path / "data") as client:
        created = client.post("/api/jobs", json=deforum)
        assert created.status_code == 201, created.text
        notes = created.json()["notes"]
        assert any("ignored" in note and "face restoration 1 (restore_faces)" in note for note in notes), notes
        assert any("face restoration (restore_faces)" in note for note in notes), notes
        done = wait_for_job(status_of(client, created.json()["id"]))
        settings = client.get(f"/api/jobs/{done['id']}/settings").json()
    assert done["status"] == "finished" and settings["diffusion_cadence"] == 2 and settings["prompts"] == {"0": "a forest"}


# ----------------------------------------------------------------------------------------- bad uploads


def _cli_message(tmp_path: Path, data: bytes, filename: str, role: str) -> str:
    """What `check_image_file` (the CLI's check) says about the same bytes under the same name."""
    path = tmp_path / "cli-check" / filename
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    with pytest.raises(SettingsError) as error:
        check_image_file(path, role=role, max_bytes=5 * 1024 * 1024 if role == "image_prompt" else 50 * 1024 * 1024)
    return str(error.value).replace(str(path), filename)


BAD_IMAGES = [
    ("gif", encoded(picture(), "GIF"), "anim.gif", 415),
    ("bmp", encoded(picture(), "BMP"), "photo.png", 415),  # the name says PNG; the content decides
    ("text", b"hello, I am not a picture\n" * 10, "notes.jpg", 415),
    ("truncated", encoded(picture(128, 128))[:400], "cut.png", 422),
    ("truncated jpeg", encoded(picture(128, 128), "JPEG")[:300], "cut.jpg", 422),
    ("bomb", png_bomb(), "bomb.png", 422),
    ("empty", b"", "empty.png", 422),
]


@pytest.mark.parametrize("case, data, filename, status", BAD_IMAGES, ids=[case[0] for case in BAD_IMAGES])
def test_bad_image_uploads_are_refused_with_the_cli_message(tmp_path, case, data, filename, status):
    with studio(tmp_path / "data") as client:
        for kind in ("image_prompt", "init_image"):
            answer = upload(client, kind, data, filename)
            assert answer.status_code == status, answer.text
            assert answer.json() == {"error": _cli_message(tmp_path, data, filename, kind)}
        assert list((tmp_path / "data" / "uploads").iterdir()) == []  # nothing kept, not even a temp file


def test_image_prompt_over_5_mb_is_refused_while_it_streams(tmp_path):
    # (that reading stops at the limit, over a real socket: test_studio_server.py)
    big = b"\x89PNG\r\n\x1a\n" + bytes(6 * 1024 * 1024)

    def chunks():  # no Content-Length: the server only knows the size by reading
        for start in range(0, len(big), 256 * 1024):
            yield big[start:start + 256 * 1024]

    with studio(tmp_path / "data") as client:
        declared = client.post("/api/uploads/image_prompt?filename=huge.png", content=big,
                               headers={"Content-Type": "image/png"})
        streamed = client.post("/api/uploads/image_prompt?filename=huge.png", content=chunks(),
                               headers={"Content-Type": "image/png"})
        as_form = upload(client, "image_prompt", big, "huge.png")
        init_image = upload(client, "init_image", encoded(picture(256, 256)), "fine.png")
    message = "image_prompt: {} is larger than the 5 MB limit for image_prompt uploads; use a smaller image"
    for answer in (declared, streamed):
        assert answer.status_code == 413 and answer.json() == {"error": message.format("huge.png")}
    assert as_form.status_code == 413 and as_form.json() == {"error": message.format("the upload")}
    assert "transfer-encoding" not in declared.request.headers and "content-length" not in streamed.request.headers
    assert init_image.status_code == 201  # other kinds have their own, larger limit
    assert len(list((tmp_path / "data" / "uploads").iterdir())) == 1


def test_other_bad_uploads(tmp_path):
    with studio(tmp_path / "data") as client:
        unknown_kind = upload(client, "model", encoded(picture()))
        no_file = client.post("/api/uploads/image_prompt", data={"note": "no file here"},
                              files={"other": (None, b"x")})
        not_audio = upload(client, "soundtrack_path", b"RIFF....not a wave", "song.wav", "audio/wav")
        picture_as_audio = upload(client, "soundtrack_path", encoded(picture()), "song.mp3", "audio/mpeg")
        unknown_id = client.get("/api/uploads/" + "0" * 32)
    assert unknown_kind.status_code == 404 and "image_prompt" in unknown_kind.json()["error"]
    assert no_file.status_code == 400 and "form field `file`" in no_file.json()["error"]
    for answer in (not_audio, picture_as_audio):
        assert answer.status_code == 415
        assert answer.json()["error"].startswith("soundtrack song.")
        assert "cannot be read as audio" in answer.json()["error"] and "incoming" not in answer.json()["error"]
    assert unknown_id.status_code == 404


def test_a_soundtrack_upload_is_muxed_into_the_video(tmp_path):
    soundtrack = Path(__file__).resolve().parents[2] / "examples" / "beat.wav"
    with studio(tmp_path / "data") as client:
        stored = upload(client, "soundtrack_path", soundtrack.read_bytes(), "beat.wav", "audio/wav")
        assert stored.status_code == 201, stored.text
        job = client.post("/api/jobs", json={**SMALL, "max_frames": 10, "soundtrack_path": stored.json()["id"]}).json()
        done = wait_for_job(status_of(client, job["id"]))
        assert done["status"] == "finished", done
        path = tmp_path / "video.mp4"
        path.write_bytes(client.get(f"/api/jobs/{job['id']}/video").content)
    assert probe_video(path)["has_audio"]


# ----------------------------------------------------------------------------------------- bad documents


SERVER_PATHS = [
    ({"image_prompt": "/etc/passwd"}, 400, "document: image_prompt: a settings document sent to the studio names files by upload id"),
    ({"init_image": "../../secret.png"}, 400, "document: init_image: a settings document sent to the studio names files by upload id"),
    ({"soundtrack_path": "~/.ssh/id_rsa"}, 400, "document: soundtrack_path: a settings document"),
    ({"color_coherence": "Image", "color_coherence_image": "x.png"}, 400, "document: color_coherence_image: a settings document"),
    ({"parseq_manifest": "/etc/hosts"}, 400, "document: parseq_manifest: the studio takes a Parseq manifest inline"),
    ({"animation_prompts": {"0": "x"}, "parseq_manifest": "../manifest.json"}, 400, "document: parseq_manifest: the studio takes"),
    ({"animation_mode": "2D", "use_init": True, "init_image": "/home/me/x.png"}, 400, "document: init_image: a settings document"),
    ({"model": "/models/other"}, 422, "document: model: the studio decides model when it is started"),
    ({"model_config_dir": "/models/sd15"}, 422, "document: model_config_dir: the studio decides"),
    ({"ip_adapter": "/models/adapter"}, 422, "document: ip_adapter: the studio decides"),
    ({"tiny_vae_model": "/models/taesd"}, 422, "document: tiny_vae_model: the studio decides"),
    ({"device": "cuda"}, 422, "document: device: the studio decides"),
    ({"lora_dirs": ["/home/me/loras"]}, 422, "document: lora_dirs: the studio decides"),
    ({"depth_model": "/models/dpt"}, 422, "document: depth_model: the studio decides"),
    ({"adabins_model": "Intel/zoedepth-kitti"}, 422, "document: adabins_model: the studio decides"),
    ({"animation_mode": "3D", "depth_model": "../dpt"}, 422, "document: depth_model: the studio decides"),
    ({"safety_checker": False}, 422, "document: safety_checker: the studio decides"),
    ({"image_prompt": "0" * 32}, 422, "document: image_prompt: no upload with id"),
]


@pytest.mark.parametrize("document, status, message", SERVER_PATHS, ids=[str(list(c[0])[-1]) for c in SERVER_PATHS])
def test_documents_cannot_name_server_files_or_models(tmp_path, document, status, message):
    with studio(tmp_path / "data") as client:
        answer = client.post("/api/jobs", json={**SMALL, "max_frames": 3, **document})
        assert answer.status_code == status, answer.text
        assert answer.json()["error"].startswith(message), answer.json()
        assert client.get("/api/jobs").json() == []
        assert list((tmp_path / "data" / "renders").iterdir()) == []


def test_uploads_are_used_only_for_their_own_setting_and_only_while_they_are_plain_files(tmp_path):
    with studio(tmp_path / "data") as client:
        init = upload(client, "init_image", encoded(picture())).json()
        wrong_kind = client.post("/api/jobs", json={**SMALL, "image_prompt": init["id"]})
        stored = tmp_path / "data" / "uploads" / f"{init['id']}.png"
        stored.unlink()
        stored.symlink_to("/etc/hostname")
        symlinked = client.post("/api/jobs", json={**SMALL, "init_image": init["id"]})
        served = client.get(f"/api/uploads/{init['id']}/file")
        traversal = client.get("/api/uploads/..%2F..%2Fstudio.sqlite3")
    assert wrong_kind.status_code == 422 and wrong_kind.json()["error"].startswith("document: image_prompt: upload ")
    assert "was uploaded for init_image" in wrong_kind.json()["error"]
    assert symlinked.status_code == 422 and "is gone; upload it again" in symlinked.json()["error"]
    assert served.status_code == 404  # never the file the symlink points to
    assert traversal.status_code == 404


@pytest.mark.parametrize("document", [
    {"W": 100}, {"zoom_schedule": "0:(1.1)"}, {"zoom": "0:(1.0+"}, {"max_frames": 0},
    {"image_prompt_influence": "extreme"}, {"motion_preset": "zoom_inn"},
])
def test_invalid_settings_give_the_cli_message(tmp_path, document):
    from deforum_engine.plan.frame_plan import build_plan
    from deforum_engine.config.presets import load_preset

    with pytest.raises(SettingsError) as cli_error:
        preset = load_preset(document["motion_preset"]).settings if "motion_preset" in document else {}
        build_plan(validate_settings({**preset, **document}, "document"))
    with studio(tmp_path / "data") as client:
        answer = client.post("/api/jobs", json=document)
    assert answer.status_code == 422 and answer.json() == {"error": str(cli_error.value)}


def test_malformed_requests_are_400(tmp_path):
    with studio(tmp_path / "data") as client:
        not_json = client.post("/api/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
        batch = client.post("/api/batches", json={"settings": {"W": 64}})
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
    assert batch.status_code == 400 and "a list of settings documents" in batch.json()["error"]


# ----------------------------------------------------------------------------------------- job life


def test_cancel_resume_delete_and_what_each_state_allows(tmp_path):
    with studio(tmp_path / "data") as client:
        long = client.post("/api/jobs", json={"W": 256, "H": 256, "max_frames": 400}).json()
        queued = client.post("/api/jobs", json={**SMALL, "max_frames": 3}).json()
        running = wait_for_job(status_of(client, long["id"]), until=lambda s: s["frames_done"] >= 3)
        assert running["status"] == "running" and running["fps"] > 0 and running["seconds_left"] > 0
        assert client.get(f"/api/jobs/{long['id']}/frames/latest").headers["content-type"] == "image/png"
        assert client.delete(f"/api/jobs/{long['id']}").status_code == 409  # running
        assert client.post(f"/api/jobs/{long['id']}/resume").status_code == 409
        assert client.get(f"/api/jobs/{long['id']}/video").status_code == 409
        assert client.post(f"/api/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
        assert client.post(f"/api/jobs/{long['id']}/cancel").status_code == 200
        cancelled = wait_for_job(status_of(client, long["id"]))
        assert cancelled["status"] == "cancelled" and cancelled["resumable"]
        kept = RenderFolder(Path(cancelled["folder"])).frame_indices()
        assert 3 <= len(kept) < 400 and kept == list(range(len(kept)))
        assert client.post(f"/api/jobs/{long['id']}/cancel").status_code == 409
        assert client.get(f"/api/jobs/{long['id']}/frames/{len(kept) + 50}").status_code == 404

        # resume a cancelled queued job (never started): it renders from the start
        assert client.post(f"/api/jobs/{queued['id']}/resume").json()["status"] == "queued"
        assert wait_for_job(status_of(client, queued["id"]))["status"] == "finished"
        assert client.post(f"/api/jobs/{queued['id']}/resume").status_code == 409
        assert client.delete(f"/api/jobs/{queued['id']}").status_code == 204
        assert client.get(f"/api/jobs/{queued['id']}").status_code == 404
        assert not Path(cancelled["folder"]).with_name(Path(queued["folder"]).name).exists()
        assert client.delete(f"/api/jobs/{long['id']}").status_code == 204
        assert client.get("/api/jobs").json() == [] and client.get("/api/health").json()["ok"]


def test_a_running_render_resumes_when_the_server_comes_back(tmp_path):
    data = tmp_path / "data"
    with studio(data) as client:
        job = client.post("/api/jobs", json={"W": 128, "H": 128, "max_frames": 240, "seed": 4}).json()
        wait_for_job(status_of(client, job["id"]), until=lambda s: s["frames_done"] >= 3)
    # The server stopped mid-render: the job waits in the queue, its frames on disk.
    folder = RenderFolder(Path(job["folder"]))
    first = os.stat(folder.frame_path(0))
    kept = len(folder.frame_indices())
    assert 3 <= kept < 240 and folder.status() == "rendering"
    with studio(data) as client:
        assert client.get(f"/api/jobs/{job['id']}").json()["status"] in ("queued", "running")
        done = wait_for_job(status_of(client, job["id"]))
    assert done["status"] == "finished" and folder.frame_indices() == list(range(240))
    again = os.stat(folder.frame_path(0))
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # resumed, not redone


@pytest.mark.slow
def test_a_diffused_render_cancelled_mid_frame_resumes_to_the_uninterrupted_frames(tmp_path, tiny_sd_dir, one_torch_thread):
    from deforum_engine import render

    document = {**SMALL, "max_frames": 5, "steps": 4, "seed": 11, "prompts": {"0": "a red boat"}}
    with studio(tmp_path / "data", preview_only=False, model=str(tiny_sd_dir)) as client:
        assert client.get("/api/health").json()["model"] == str(tiny_sd_dir)
        job = client.post("/api/jobs", json=document).json()
        assert not job["preview"]
        with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: frame"):  # frame 0 is out: the loop is diffusing frame 1
                    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
                    break
        cancelled = wait_for_job(status_of(client, job["id"]))
        assert cancelled["status"] == "cancelled", cancelled
        assert 1 <= len(RenderFolder(Path(cancelled["folder"])).frame_indices()) < 5
        assert client.get("/api/health").json()["ok"]
        client.post(f"/api/jobs/{job['id']}/resume")
        assert wait_for_job(status_of(client, job["id"]))["status"] == "finished"
        settings = validate_settings(client.get(f"/api/jobs/{job['id']}/settings").json(), "settings")
    render(settings, out=tmp_path / "uninterrupted", quiet=True)
    resumed, whole = read_frames(Path(cancelled["folder"])), read_frames(tmp_path / "uninterrupted")
    assert len(whole) == 5 and all(np.array_equal(a, b) for a, b in zip(resumed, whole, strict=True))


@pytest.mark.slow
def test_image_prompts_are_screened_by_the_models_safety_checker(tmp_path, tiny_sd_dir, tiny_ip_adapter_dir, one_torch_thread):
    model = build_tiny_sd_with_checker(tmp_path / "tiny-sd-checker", tiny_sd_dir)
    options = {"preview_only": False, "model": str(model), "ip_adapter": str(tiny_ip_adapter_dir)}
    with studio(tmp_path / "data", **options) as client:
        flagged = upload(client, "image_prompt", encoded(flagged_picture()), "stripes.png").json()
        clean = upload(client, "image_prompt", encoded(picture(seed=3)), "garden.png").json()
        refused = client.post("/api/jobs", json={**SMALL, "max_frames": 2, "steps": 2, "image_prompt": flagged["id"]}).json()
        accepted = client.post("/api/jobs", json={**SMALL, "max_frames": 2, "steps": 2, "image_prompt": clean["id"]}).json()
        refused, accepted = (wait_for_job(status_of(client, job["id"]), timeout=120) for job in (refused, accepted))
        preview = client.post("/api/jobs?preview=true", json={**SMALL, "max_frames": 2, "image_prompt": flagged["id"]}).json()
        preview = wait_for_job(status_of(client, preview["id"]))
    assert refused["status"] == "failed" and refused["error"] == (
        f"image_prompt: stripes.png (upload {flagged['id']}) was flagged as NSFW by the model's safety checker; "
        "choose another image")
    assert RenderFolder(Path(refused["folder"])).frame_indices() == []
    assert accepted["status"] == "finished", accepted
    assert preview["status"] == "finished"  # a motion preview uses no model and shows no image prompt


# ----------------------------------------------------------------------------------------- batches


def test_batches_of_documents_and_of_a_jobs_file(tmp_path):
    with studio(tmp_path / "data") as client:
        listed = client.post("/api/batches", json={"settings": [{**SMALL, "max_frames": 2}, {**SMALL, "max_frames": 3}]})
        assert listed.status_code == 201, listed.text
        image = upload(client, "image_prompt", encoded(picture())).json()["id"]
        jobs_file = f'[matrix]\nseed = [1, 2]\nimage_prompt = ["{image}"]\n[[jobs]]\nname = "intro"\nmax_frames = 4\n'
        matrix = client.post("/api/batches", json={"jobs_file": jobs_file, "base": {**SMALL, "max_frames": 2}})
        assert matrix.status_code == 201, matrix.text
        names = [job["name"] for job in matrix.json()["jobs"]]
        assert names == ["intro", f"jobs-1-{image}", f"jobs-2-{image}"]
        batch = matrix.json()["batch_id"]
        for job in matrix.json()["jobs"]:
            wait_for_job(status_of(client, job["id"]))
        finished = client.get(f"/api/batches/{batch}").json()["jobs"]
        assert [(job["status"], job["frames"]) for job in finished] == [("finished", 4), ("finished", 2), ("finished", 2)]

        invalid = client.post("/api/batches", json={"settings": [{**SMALL, "max_frames": 2}, {"W": 100}, {"init_image": "/x"}]})
        path_base = client.post("/api/batches", json={"jobs_file": 'base = "/etc/settings.json"\n'})
        escape = client.post("/api/batches", json={"jobs_file": '[[jobs]]\ninit_image = "../../etc/x.png"\n'})
        assert len(client.get("/api/jobs").json()) == 5  # nothing from the refused batches
    assert invalid.status_code == 422
    assert invalid.json()["error"].startswith("document 2: `W`: must be a multiple of 8")
    assert "; document 3: init_image: a settings document sent to the studio names files by upload id" in invalid.json()["error"]
    assert path_base.status_code == 400 and "`base` names a settings file on the server" in path_base.json()["error"]
    assert escape.status_code == 400 and "init_image: a settings document" in escape.json()["error"]


def test_the_deforum_extension_api_shape(tmp_path):
    deforum = {"animation_mode": "2D", "max_frames": 3, "W": 64, "H": 64, "animation_prompts": {"0": "a cave"}}
    with studio(tmp_path / "data") as client:
        accepted = client.post("/deforum_api/batches", json={"deforum_settings": [deforum, deforum],
                                                             "options_overrides": {"sd_model_checkpoint": "x"}})
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()
        assert body["message"] == "Job(s) accepted" and len(body["job_ids"]) == 2
        for job_id in body["job_ids"]:
            wait_for_job(lambda: client.get(f"/deforum_api/jobs/{job_id}").json(), statuses=("SUCCEEDED", "FAILED"))
        statuses = client.get(f"/deforum_api/batches/{body['batch_id']}").json()
        empty = client.post("/deforum_api/batches", json={"deforum_settings": []})
        missing = client.get("/deforum_api/jobs/000000000000")
    assert [(s["status"], s["phase"], s["phase_progress"]) for s in statuses] == [("SUCCEEDED", "DONE", 1.0)] * 2
    assert empty.status_code == 400 and missing.status_code == 404


# ----------------------------------------------------------------------------------------- the rest


def test_preset_preview_clips_are_rendered_once_and_cached(tmp_path):
    with studio(tmp_path / "data") as client:
        options = client.get("/api/options").json()
        zoom = next(p for p in options["presets"] if p["name"] == "zoom_in")
        first = client.get(zoom["preview"])
        cached = list((tmp_path / "data" / "previews").glob("zoom_in-*.mp4"))
        stamp = cached[0].stat().st_mtime_ns
        second = client.get(zoom["preview"])
        music = client.get("/api/presets/audio_pulse_zoom/preview.mp4")
        unknown = client.get("/api/presets/no_such/preview.mp4")
    assert first.status_code == second.status_code == music.status_code == 200
    assert first.content == second.content and cached[0].stat().st_mtime_ns == stamp
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(first.content)
    assert (probe_video(clip)["frames"], probe_video(clip)["width"]) == (45, 128)
    assert unknown.status_code == 404 and "known presets" in unknown.json()["error"]
    assert {"styles", "presets", "influence_levels", "upload_limits"} <= set(options)
    assert options["influence_levels"]["high"] == 0.8 and options["upload_limits"]["image_prompt"] == 5 * 1024 * 1024


def test_a_token_is_checked_on_every_request(tmp_path):
    with studio(tmp_path / "data", token="s3cret") as client:
        assert client.get("/api/health").status_code == 401
        assert client.get("/").status_code == 401 and client.get("/static/app.js").status_code == 401
        assert client.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        page = client.get("/?token=s3cret")
        assert page.status_code == 200 and "deforum_engine_token=s3cret" in page.headers["set-cookie"]
        assert client.get("/api/health").status_code == 200  # the cookie the page got
        client.cookies.clear()
        assert client.get("/api/jobs").json()["error"].startswith("this studio needs its token")


def test_requests_from_other_sites_or_host_names_are_refused(tmp_path):
    with studio(tmp_path / "data") as client:
        rebound = client.get("/api/health", headers={"Host": "attacker.example:7860"})
        cross_site = client.post("/api/jobs", json={**SMALL, "max_frames": 2}, headers={"Origin": "https://evil.example"})
        same_site = client.post("/api/jobs", json={**SMALL, "max_frames": 2}, headers={"Origin": "http://127.0.0.1"})
    assert rebound.status_code == 403 and "answers only to localhost" in rebound.json()["error"]
    assert cross_site.status_code == 403 and "cross-origin" in cross_site.json()["error"]
    assert same_site.status_code == 201


def test_serve_refuses_to_listen_beyond_localhost_without_a_token(capsys, monkeypatch):
    monkeypatch.delenv("DEFORUM_ENGINE_TOKEN", raising=False)
    assert cli.main(["serve", "--host", "0.0.0.0", "--preview"]) == 2
    assert "give a token with --token or the DEFORUM_ENGINE_TOKEN environment variable" in capsys.readouterr().err


def test_the_api_is_documented(tmp_path):
    with studio(tmp_path / "data") as client:
        paths = client.get("/openapi.json").json()["paths"]
        docs = client.get("/docs")
    for path in ("/api/uploads/{kind}", "/api/jobs", "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/cancel",
                 "/api/jobs/{job_id}/resume", "/api/jobs/{job_id}/video", "/api/jobs/{job_id}/frames.zip",
                 "/api/batches", "/deforum_api/batches"):
        assert path in paths
    assert docs.status_code == 200

