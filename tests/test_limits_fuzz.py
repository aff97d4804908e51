"""Fuzzing the studio's API (issue 22): any settings document, jobs file or upload gets a JSON answer,
never a plain-text 500, within a time and memory bound.

Documents mix real setting names with random keys and random JSON values (huge integers, deep-ish
nesting, long strings); jobs files are random TOML built from the pieces a jobs file is made of;
uploads are random bytes, truncated real images and broken multipart bodies. A few dozen examples per
test keep it to seconds.
"""
from __future__ import annotations

import json
import resource
import time

import pytest

pytest.importorskip("fastapi", reason="the studio's extra is not installed (pip install -e '.[studio]')")
hypothesis = pytest.importorskip("hypothesis")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from deforum_engine.config.settings import SETTING_NAMES  # noqa: E402
from deforum_engine.studio.app import create_app  # noqa: E402
from deforum_engine.studio.config import StudioConfig  # noqa: E402
from studio_helpers import encoded, picture  # noqa: E402

SECONDS = 5.0  # per request
JSON = {"Content-Type": "application/json"}
GROWTH_MB = 400  # peak resident memory the whole fuzz run may add

_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 40), max_value=10 ** 40),
                     st.floats(), st.text(max_size=40),
                     st.sampled_from(["0:(1)", "0:(1.02), 10:(0.98)", "auto", "zoom_in", "-1", "", "0: (sin(t))"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                                  max_size=4), max_leaves=12)
_keys = st.one_of(st.sampled_from(SETTING_NAMES), st.text(max_size=12))
documents = st.dictionaries(_keys, _values, max_size=8)

_toml_values = st.sampled_from(['1', '"a"', '[1, 2]', '[[1], [2]]', '{a = 1}', 'true', '1e400', '"0:(1)"',
                                '99999999999999999999999999', '[' * 40 + ']' * 40, '"' + 'x' * 200 + '"'])
_toml_keys = st.one_of(st.sampled_from(["seed", "max_frames", "name", "zoom", "W", "base", "motion_preset"]),
                       st.lists(st.sampled_from("abc"), min_size=1, max_size=40).map(".".join))
_toml_lines = st.one_of(st.tuples(_toml_keys, _toml_values).map(lambda kv: f"{kv[0]} = {kv[1]}"),
                        st.sampled_from(["[matrix]", "[[jobs]]", "[jobs]", "[[matrix]]", "", "# note", "= 1", "[a.b"]))
jobs_files = st.lists(_toml_lines, max_size=12).map("\n".join)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(StudioConfig(data=tmp_path_factory.mktemp("fuzz") / "data", preview_only=True))
    return TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)


@pytest.fixture(scope="module", autouse=True)
def memory_bound():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown < GROWTH_MB, f"the fuzzed requests raised the peak memory by {grown:.0f} MB"


def answered(response, started: float) -> None:
    assert time.perf_counter() - started < SECONDS
    assert response.status_code < 500 or response.status_code in (507,), response.text[:300]
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    if response.status_code >= 400:
        message = response.json()["error"]
        assert isinstance(message, str) and "\n" not in message and len(message) < 4000


_fuzz = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@_fuzz
@given(document=documents, preview=st.sampled_from([None, True]))
def test_any_settings_document_gets_a_json_answer(client, document, preview):
    started = time.perf_counter()
    body = json.dumps(document)  # NaN and Infinity included, as Python's JSON reader takes them
    answered(client.post("/api/jobs", content=body, headers=JSON,
                         params={} if preview is None else {"preview": "true"}), started)
    started = time.perf_counter()
    answered(client.post("/api/settings/import", content=body, headers=JSON), started)


@_fuzz
@given(text=jobs_files, base=documents)
def test_any_jobs_file_gets_a_json_answer(client, text, base):
    started = time.perf_counter()
    answered(client.post("/api/batches", content=json.dumps({"jobs_file": text, "base": base}), headers=JSON), started)


_real = encoded(picture(64, 64))
uploads = st.one_of(st.binary(max_size=2000), st.integers(0, len(_real)).map(lambda n: _real[:n]),
                    st.binary(max_size=200).map(lambda junk: _real[:100] + junk + _real[100:]))
_multipart = st.tuples(st.binary(max_size=300), st.sampled_from([b"xyz", b""]), st.booleans())


@_fuzz
@given(data=uploads, kind=st.sampled_from(["init_image", "image_prompt", "soundtrack_path", "nope"]),
       form=_multipart)
def test_any_upload_gets_a_json_answer(client, data, kind, form):
    started = time.perf_counter()
    answered(client.post(f"/api/uploads/{kind}", files={"file": ("f.png", data, "image/png")}), started)
    junk, boundary, wrapped = form
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n' + junk
            + b"\r\n--" + boundary + b"--\r\n") if wrapped else junk
    started = time.perf_counter()
    answered(client.post(f"/api/uploads/{kind}", content=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}), started)
