"""The SDK part of tests/data/corpus: what the differential test relies on is there, and
``python -m tests.sdk.capture`` writes bodies byte for byte without touching other files."""

from __future__ import annotations

import json

from tests.sdk import capture
from tests.sdk.front import Exchange

SDKS = ("python-unleashclient-6.9.1", "node-unleash-client-6.12.1")


def test_each_sdk_has_bodies_from_every_phase_in_the_corpus():
    for sdk in SDKS:
        files = sorted(capture.CORPUS.glob(f"{sdk}-*.json"))
        phases = {path.stem.rsplit("phase", 1)[1] for path in files}
        assert phases == {"A", "B", "C"}, sdk
        for path in files:
            body = json.loads(path.read_bytes())
            assert body["appName"].startswith("sdk-run-"), path.name
            assert "impactMetrics" in body, path.name


def test_the_python_sdk_s_impact_only_bodies_have_a_null_bucket():
    files = sorted(capture.CORPUS.glob(f"{SDKS[0]}-*-phase[BC].json"))
    assert files
    assert all(json.loads(path.read_bytes())["bucket"] is None for path in files)


def test_capture_writes_bodies_as_sent_and_replaces_only_the_sdk_s_own_files(tmp_path):
    (tmp_path / "mine-99-phaseA.json").write_text("{}")  # an older capture: replaced
    (tmp_path / "generated-7.json").write_text("{}")  # another source's body: kept
    raw = b'{"appName":"x", "bucket": null}'  # spacing as sent, not re-serialised
    written = capture.write("mine", [Exchange("B", "/api/client/metrics", raw, 202, b"")],
                            corpus=tmp_path)
    assert [path.name for path in written] == ["mine-01-phaseB.json"]
    assert written[0].read_bytes() == raw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated-7.json",
                                                         "mine-01-phaseB.json"]
