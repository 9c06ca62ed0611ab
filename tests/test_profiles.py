"""Device profiles: the shipped files, lookup, units, overrides and every schema error."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from optodfa.profiles import SCHEMA, ProfileError, known_profiles, load_profile, parse_profile, profile_dirs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHIPPED = ("lighton-aurora", "ideal-opu", "low-light-opu")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_and_state_every_number_with_unit_and_source(name):
    profile = load_profile(name)
    assert profile.name == name and set(profile.values) == set(SCHEMA)
    raw = tomllib.loads(Path(profile.path).read_text())
    for key, field in SCHEMA.items():
        section, _, item = key.partition(".")
        entry = raw[section][item]  # every key is written out in the shipped files
        if field.kind in ("int", "float"):
            assert isinstance(entry, dict) and entry.get("unit") and entry.get("source", "").strip(), key
    json.dumps(profile.as_dict(), allow_nan=False)


def test_aurora_is_the_default_and_numbers_are_in_si():
    profile = load_profile()
    assert profile.name == "lighton-aurora" and set(SHIPPED) <= set(known_profiles())
    assert profile["camera.exposure"] == pytest.approx(400e-6) and profile["device.frame_time"] == pytest.approx(5e-4)
    assert profile["camera.bits"] == 8 and profile["dmd.rows"] * profile["dmd.cols"] == 912 * 1140
    assert profile["device.power"] == 30.0 and profile["camera.gain"] is None  # 'auto'
    entry = profile.entries["camera.exposure"]
    assert entry["unit"] == "s" and entry["given"] == "400 us" and "lightonml" in entry["source"]
    ideal = load_profile("ideal-opu")
    assert ideal["camera.bits"] is None and math.isinf(ideal["camera.full_well"])
    assert ideal.as_dict()["camera"]["full_well"]["value"] is None  # JSON has no infinity


def test_overrides_from_strings_and_typed_values():
    profile = load_profile("lighton-aurora", {"camera.bits": "4", "camera.exposure": "200us",
                                              "camera.read_noise": "2.5", "camera.shot_noise": "off",
                                              "readout.mode": "intensity", "drift.period": 20})
    assert profile["camera.bits"] == 4 and profile["camera.exposure"] == pytest.approx(2e-4)
    assert profile["camera.read_noise"] == 2.5 and profile["camera.shot_noise"] is False
    assert profile["readout.mode"] == "intensity" and profile["drift.period"] == 20
    assert profile.entries["camera.bits"]["source"] == "override"
    assert load_profile(None, {"camera.exposure": "0.2 ms"})["camera.exposure"] == pytest.approx(2e-4)
    assert load_profile(None, {"camera.exposure": 100})["camera.exposure"] == pytest.approx(1e-4)  # display unit us
    assert load_profile(None, {"camera.bits": "unlimited"})["camera.bits"] is None
    assert load_profile(None, {"camera.full_well": "inf"})["camera.full_well"] == math.inf


@pytest.mark.parametrize(("overrides", "match"), [
    ({"camera.bitz": "4"}, r"unknown setting\(s\) 'camera.bitz'; allowed: camera.auto_exposure, "),
    ({"camera.bits": "eight"}, r"camera.bits must be an integer in \[1, 16\] or 'unlimited' .*got 'eight'"),
    ({"camera.bits": "17"}, r"camera.bits must be an integer in \[1, 16\] or 'unlimited'.*got 17 bit"),
    ({"camera.bits": "0"}, r"camera.bits must be an integer in \[1, 16\].*got 0 bit"),
    ({"camera.bits": 8.0}, r"camera.bits must be an integer .*got 8.0 \(float\)"),
    ({"camera.exposure": "-5us"}, r"camera.exposure must be a number > 0 .*got -5.0 us"),
    ({"camera.read_noise": "-1"}, r"camera.read_noise must be a number >= 0 .*got -1.0 e-"),
    ({"camera.exposure": "5 W"}, r"camera.exposure: unit 'W' is not a unit of time; allowed units: s, ms, us"),
    ({"camera.shot_noise": "maybe"}, "camera.shot_noise must be true or false, got 'maybe'"),
    ({"readout.mode": "phase"}, "readout.mode must be one of 'holographic', 'strong-reference', 'intensity'"),
    ({"camera.full_well": "-inf"}, r"camera.full_well must be a number > 0 or inf"),
])
def test_bad_overrides(overrides, match):
    with pytest.raises(ProfileError, match=match):
        load_profile(None, overrides)


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "match"), [
    ("[camera]\nbitz = {value = 8, unit = 'bit', source = 'x'}\n",
     r"unknown key\(s\) camera.bitz; allowed in \[camera\]: auto_exposure, "),
    ("[lens]\nfocal = 3\n", r"unknown section\(s\) 'lens'; allowed: camera, device, dmd, drift, encoding, faults, "),
    ("[camera]\nbits = 8\n", r"camera.bits needs a unit: write bits = \{value = ..., unit = \"bit\", source"),
    ("[camera]\nbits = {value = 8, unit = 'bit'}\n", r"camera.bits needs a source \(where the number comes from\)"),
    ("[camera]\nbits = {value = 'eight', unit = 'bit', source = 'x'}\n", "camera.bits must be an integer"),
    ("[camera]\nexposure = {value = 4, unit = 'kg', source = 'x'}\n", "unit 'kg' is not a unit of time"),
    ("[camera]\nshot_noise = 'yes'\n", r"camera.shot_noise must be true or false, got 'yes' \(str\)"),
    ("[camera]\nshot_noise = {value = true, unit = '1'}\n", "camera.shot_noise is true or false and takes no unit"),
    ("[camera]\nbits = {value = 8, units = 'bit', source = 'x'}\n", "must be a table with value, unit and source"),
    ("camera = 3\n", r"\[camera\] must be a table, got int"),
    ("[profile]\nowner = 'me'\n", r"\[profile\] may hold only name, description"),
    ("[camera\n", "is not valid TOML"),
])
def test_bad_profile_files(tmp_path, text, match):
    with pytest.raises(ProfileError, match=match):
        load_profile(str(write(tmp_path, text)))


def test_partial_file_takes_recorded_defaults(tmp_path):
    profile = load_profile(str(write(tmp_path, "[camera]\nbits = {value = 10, unit = 'bit', source = 'lab'}\n")))
    assert profile.name == "mine" and profile["camera.bits"] == 10
    assert profile.entries["camera.read_noise"]["source"] == "optodfa default"


def test_lookup_by_name_in_environment_folders_and_errors(tmp_path, monkeypatch):
    write(tmp_path, "[camera]\nbits = {value = 6, unit = 'bit', source = 'lab'}\n", "lab-opu.toml")
    monkeypatch.setenv("OPTODFA_PROFILES", str(tmp_path))
    assert profile_dirs()[0] == tmp_path
    assert load_profile("lab-opu")["camera.bits"] == 6
    with pytest.raises(ProfileError, match=r"unknown profile 'nope'; known profiles: chip-4bit, chip-8bit, "
                                           r"ideal-opu, lab-opu, lighton-aurora, low-light-opu"):
        load_profile("nope")
    with pytest.raises(ProfileError, match=r"profile file '.*missing.toml' does not exist"):
        load_profile(str(tmp_path / "missing.toml"))


def test_parse_profile_from_python_data():
    profile = parse_profile({"camera": {"bits": {"value": 12, "unit": "bit", "source": "datasheet"}}}, name="py")
    assert profile["camera.bits"] == 12 and profile.path is None
    with pytest.raises(KeyError, match="unknown profile key 'camera.bitz'"):
        profile["camera.bitz"]
