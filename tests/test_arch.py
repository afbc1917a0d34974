"""Architecture files: presets, defaults, overrides and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from accelsim.arch import ArchConfig, load_arch, preset_names
from accelsim.errors import AccelsimError


def write(tmp_path, text, name="arch.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_of(spec, overrides=()):
    with pytest.raises(AccelsimError) as info:
        load_arch(spec, overrides)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_presets_load_with_documented_values():
    assert preset_names() == ["cnvlutin", "eie64"]
    eie = load_arch("eie64")
    assert (eie.arch.name, eie.arch.dataflow, eie.arch.clock_mhz) == ("eie64", "eie", 800.0)
    assert (eie.eie.num_pes, eie.eie.fifo_depth, eie.eie.index_bits) == (64, 8, 4)
    assert eie.memory.weight_entry_bits == 8 and eie.memory.act_sram_bytes_per_pe == 2048
    cnv = load_arch("cnvlutin")
    assert cnv.arch.dataflow == "cnvlutin"
    assert (cnv.sparsity.activations, cnv.sparsity.weights) == ("skip", "none")
    assert (cnv.cnvlutin.units, cnv.cnvlutin.lanes, cnv.cnvlutin.brick_size) == (16, 16, 16)


def test_every_section_optional_and_name_from_file(tmp_path):
    cfg = load_arch(write(tmp_path, "[eie]\nnum_pes = 32\n", "small.toml"))
    assert cfg.eie.num_pes == 32
    assert cfg.eie.fifo_depth == 8 and cfg.sparsity.activations == "skip"
    assert cfg.arch.name == "small"
    assert load_arch(write(tmp_path, "")).memory.dram_bytes_per_cycle == 0.0


def test_int_accepted_for_float_and_relative_energy_table(tmp_path):
    cfg = load_arch(write(tmp_path, '[arch]\nclock_mhz = 1000\n[energy]\ntable = "e.toml"\n'))
    assert cfg.arch.clock_mhz == 1000.0 and isinstance(cfg.arch.clock_mhz, float)
    assert cfg.energy.table == str(tmp_path.resolve() / "e.toml")


def test_unknown_key_suggests_close_match(tmp_path):
    path = write(tmp_path, "[eie]\nfifo_dpeth = 4\n")
    assert error_of(path) == f"{path}: unknown key 'eie.fifo_dpeth' (did you mean 'eie.fifo_depth'?)"


def test_unknown_section_and_top_level_key(tmp_path):
    path = write(tmp_path, "[eei]\nnum_pes = 4\n")
    assert "unknown section 'eei' (did you mean 'eie'?)" in error_of(path)
    path = write(tmp_path, "num_pes = 4\n")
    assert "unknown key 'num_pes'" in error_of(path)
    path = write(tmp_path, "eie = 4\n")
    assert "'eie' must be a [eie] table" in error_of(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[eie]\nfifo_depth = "x"\n', "eie.fifo_depth must be an integer, got 'x'"),
        ("[eie]\nfifo_depth = 2.5\n", "eie.fifo_depth must be an integer, got 2.5"),
        ("[eie]\nnum_pes = true\n", "eie.num_pes must be an integer, got True"),
        ("[arch]\nclock_mhz = \"fast\"\n", "arch.clock_mhz must be a number, got 'fast'"),
        ("[sparsity]\nweights = 1\n", "sparsity.weights must be a string, got 1"),
        ("[eie]\nnum_pes = 0\n", "eie.num_pes must be >= 1, got 0"),
        ("[eie]\nfifo_depth = 0\n", "eie.fifo_depth must be >= 1, got 0"),
        ("[eie]\nindex_bits = 0\n", "eie.index_bits must be >= 1, got 0"),
        ("[eie]\nempty_slice_cycles = -1\n", "eie.empty_slice_cycles must be >= 0, got -1"),
        ("[arch]\nclock_mhz = 0\n", "arch.clock_mhz must be > 0, got 0.0"),
        ('[arch]\ndataflow = "scnn"\n', "arch.dataflow must be one of 'cnvlutin', 'eie', got 'scnn'"),
        ('[sparsity]\nactivations = "skp"\n', "sparsity.activations must be one of"),
        ('[topk]\nscheme = "heap"\n', "topk.scheme must be one of"),
        ("[topk]\nradix_bits = 9\nvalue_bits = 8\n", "topk.radix_bits must be <= topk.value_bits"),
        ("[memory]\ndram_bytes_per_cycle = -1.0\n", "memory.dram_bytes_per_cycle must be >= 0"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    msg = error_of(path)
    assert msg.startswith(f"{path}: ")
    assert expected in msg


def test_missing_file_invalid_toml_unknown_preset(tmp_path):
    assert error_of(str(tmp_path / "nope.toml")) == f"{tmp_path / 'nope.toml'}: arch file not found"
    path = write(tmp_path, "[eie\nnum_pes = 4\n")
    assert error_of(path).startswith(f"{path}: invalid TOML: ")
    msg = error_of("eie65")
    assert "no such preset or file" in msg and "eie64" in msg


def test_overrides_parse_toml_values_with_string_fallback():
    cfg = load_arch("eie64", ["eie.num_pes=32", "sparsity.activations=gate", "arch.clock_mhz=1e3",
                              "arch.name=128", 'energy.table="my table.toml"'])
    assert cfg.eie.num_pes == 32 and cfg.sparsity.activations == "gate"
    assert cfg.arch.clock_mhz == 1000.0 and cfg.arch.name == "128"
    assert cfg.energy.table == "my table.toml"


def test_override_errors():
    assert error_of("eie64", ["eie.fifo_dpeth=4"]) == (
        "--set: unknown key 'eie.fifo_dpeth' (did you mean 'eie.fifo_depth'?)"
    )
    assert error_of("eie64", ["eie.fifo_depth=x"]) == (
        "--set eie.fifo_depth: eie.fifo_depth must be an integer, got 'x'"
    )
    assert error_of("eie64", ["eie.num_pes=0"]) == "--set eie.num_pes: eie.num_pes must be >= 1, got 0"
    assert "expected section.key=value" in error_of("eie64", ["eie.num_pes"])
    assert "expected section.key=value" in error_of("eie64", ["num_pes=3"])


def test_override_applies_before_validation(tmp_path):
    path = write(tmp_path, "[eie]\nnum_pes = 0\n")
    assert load_arch(path, ["eie.num_pes=4"]).eie.num_pes == 4


def test_to_dict_fingerprint_and_with_sparsity(tmp_path):
    cfg = load_arch("eie64")
    d = cfg.to_dict()
    assert set(d) == {"arch", "eie", "cnvlutin", "sparsity", "topk", "memory", "energy"}
    # writing the dict back as TOML gives the same configuration and fingerprint
    lines = []
    for section, table in d.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    again = load_arch(write(tmp_path, "\n".join(lines) + "\n"))
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    assert len(cfg.fingerprint()) == 64
    assert load_arch("eie64", ["eie.fifo_depth=4"]).fingerprint() != cfg.fingerprint()
    dense = cfg.with_sparsity("none", "none")
    assert (dense.sparsity.activations, dense.sparsity.weights) == ("none", "none")
    assert dense.eie == cfg.eie and dense != cfg and dense.fingerprint() != cfg.fingerprint()
    assert dense.with_sparsity("skip", "skip") == cfg
    with pytest.raises(AccelsimError, match="sparsity.weights must be one of"):
        cfg.with_sparsity("skip", "skipp")
    assert isinstance(cfg, ArchConfig)
