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
    assert preset_names() == ["cnvlutin", "eie64", "scnn", "systolic-is", "systolic-os",
                              "systolic-ws"]
    eie = load_arch("eie64")
    assert (eie.arch.name, eie.arch.dataflow, eie.arch.clock_mhz) == ("eie64", "eie", 800.0)
    assert (eie.eie.num_pes, eie.eie.fifo_depth, eie.eie.index_bits) == (64, 8, 4)
    assert eie.memory.weight_entry_bits == 8 and eie.memory.act_sram_bytes_per_pe == 2048
    cnv = load_arch("cnvlutin")
    assert cnv.arch.dataflow == "cnvlutin"
    assert (cnv.sparsity.activations, cnv.sparsity.weights) == ("skip", "none")
    assert (cnv.cnvlutin.units, cnv.cnvlutin.lanes, cnv.cnvlutin.brick_size) == (16, 16, 16)
    assert cnv.cnvlutin.pack_taps is False  # DaDianNao / Cnvlutin: a brick group never mixes taps
    scnn = load_arch("scnn")
    assert (scnn.sparsity.activations, scnn.sparsity.weights) == ("skip", "skip")
    assert (scnn.scnn.pe_rows, scnn.scnn.pe_cols, scnn.scnn.weight_vector, scnn.scnn.act_vector,
            scnn.scnn.banks, scnn.scnn.bank_entries, scnn.scnn.kc) == (8, 8, 4, 4, 32, 32, 0)


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
        ("[eie]\nnum_pes = 0\n", "eie.num_pes must be >= 1 and <= 4096, got 0"),
        ("[eie]\nfifo_depth = 0\n", "eie.fifo_depth must be >= 1 and <= 65536, got 0"),
        ("[eie]\nindex_bits = 0\n", "eie.index_bits must be >= 1 and <= 32, got 0"),
        ("[eie]\nempty_slice_cycles = -1\n", "eie.empty_slice_cycles must be >= 0 and <= 1024, got -1"),
        ("[arch]\nclock_mhz = 0\n", "arch.clock_mhz must be > 0 and <= 100000, got 0.0"),
        ('[arch]\ndataflow = "tpu"\n', "arch.dataflow must be one of 'cnvlutin', 'eie', 'scnn', 'systolic', got 'tpu'"),
        ('[sparsity]\nactivations = "skp"\n', "sparsity.activations must be one of"),
        ('[topk]\nscheme = "heap"\n', "topk.scheme must be one of"),
        ("[topk]\nradix_bits = 9\nvalue_bits = 8\n", "topk.radix_bits must be <= topk.value_bits"),
        ("[memory]\ndram_bytes_per_cycle = -1.0\n", "memory.dram_bytes_per_cycle must be 0 or >= 0.001 and <= 1e+09, got -1.0"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    msg = error_of(path)
    assert msg.startswith(f"{path}: ")
    assert expected in msg


# Non-finite and absurd numbers: one line naming the file (or --set), the key and the bounds.
HARDENING = [
    ("[arch]\nclock_mhz = nan\n", "arch.clock_mhz must be a finite number > 0 and <= 100000, got nan"),
    ("[arch]\nclock_mhz = inf\n", "arch.clock_mhz must be a finite number > 0 and <= 100000, got inf"),
    ("[arch]\nclock_mhz = -inf\n", "arch.clock_mhz must be a finite number"),
    ("[arch]\nclock_mhz = 1e308\n", "arch.clock_mhz must be > 0 and <= 100000, got 1e+308"),
    ("[arch]\ndata_bits = 1000\n", "arch.data_bits must be >= 1 and <= 64, got 1000"),
    ("[eie]\nnum_pes = 1000000000\n", "eie.num_pes must be >= 1 and <= 4096, got 1000000000"),
    ("[eie]\nfifo_depth = 1000000000\n", "eie.fifo_depth must be >= 1 and <= 65536, got 1000000000"),
    ("[eie]\nindex_bits = 99\n", "eie.index_bits must be >= 1 and <= 32, got 99"),
    ("[eie]\nempty_slice_cycles = 9223372036854775807\n", "eie.empty_slice_cycles must be >= 0 and <= 1024, got 9.22e+18"),
    ("[cnvlutin]\nunits = 100000\n", "cnvlutin.units must be >= 1 and <= 1024, got 100000"),
    ("[cnvlutin]\nlanes = 5000\n", "cnvlutin.lanes must be >= 1 and <= 1024"),
    ("[cnvlutin]\nfilters_per_unit = 0\n", "cnvlutin.filters_per_unit must be >= 1 and <= 1024, got 0"),
    ("[cnvlutin]\nbrick_size = 10000\n", "cnvlutin.brick_size must be >= 1 and <= 4096"),
    ("[topk]\ncomparators = 1e9\n", "topk.comparators must be an integer, got 1000000000.0"),
    ("[topk]\ncomparators = 1000000000\n", "topk.comparators must be >= 1 and <= 1.04858e+06"),
    ("[topk]\nvalue_bits = 33\n", "topk.value_bits must be >= 1 and <= 32, got 33"),
    ("[memory]\ndram_bytes_per_cycle = nan\n", "memory.dram_bytes_per_cycle must be a finite number"),
    ("[memory]\ndram_bytes_per_cycle = 1e-300\n", "memory.dram_bytes_per_cycle must be 0 or >= 0.001 and <= 1e+09, got 1e-300"),
    ("[memory]\ndram_bytes_per_cycle = inf\n", "memory.dram_bytes_per_cycle must be a finite number"),
    ("[memory]\nweight_sram_bytes_per_pe = 0\n", "memory.weight_sram_bytes_per_pe must be >= 1"),
    ("[memory]\nact_sram_bytes_per_pe = 10000000000000000\n", "memory.act_sram_bytes_per_pe must be >= 1 and <= 1.09951e+12"),
    ("[memory]\nweight_entry_bits = 100\n", "memory.weight_entry_bits must be >= 1 and <= 64, got 100"),
]


@pytest.mark.parametrize("text, expected", HARDENING)
def test_non_finite_and_absurd_numbers_are_refused(tmp_path, text, expected):
    path = write(tmp_path, text)
    msg = error_of(path)
    assert msg.startswith(f"{path}: ")
    assert expected in msg


@pytest.mark.parametrize("item, expected", [
    ("eie.num_pes=10**30", "--set eie.num_pes: eie.num_pes must be an integer, got '10**30'"),
    ("eie.num_pes=1000000000000000000000000000000", "--set eie.num_pes: eie.num_pes must be >= 1 and <= 4096, got 1e+30"),
    ("eie.num_pes=1e9", "--set eie.num_pes: eie.num_pes must be an integer, got 1000000000.0"),
    ("eie.fifo_depth=1000000000", "--set eie.fifo_depth: eie.fifo_depth must be >= 1 and <= 65536, got 1000000000"),
    ("arch.clock_mhz=nan", "--set arch.clock_mhz: arch.clock_mhz must be a finite number > 0 and <= 100000, got nan"),
    ("memory.dram_bytes_per_cycle=1e-300", "--set memory.dram_bytes_per_cycle: memory.dram_bytes_per_cycle must be 0 or >= 0.001"),
])
def test_override_bounds(item, expected):
    assert error_of("eie64", [item]).startswith(expected)


def test_bounds_allow_real_arrays_and_zero_bandwidth():
    cfg = load_arch("eie64", ["eie.num_pes=4096", "eie.fifo_depth=65536", "memory.dram_bytes_per_cycle=0",
                              "arch.clock_mhz=3000", "memory.weight_sram_bytes_per_pe=1099511627776"])
    assert cfg.eie.num_pes == 4096 and cfg.memory.dram_bytes_per_cycle == 0.0
    assert load_arch("cnvlutin", ["memory.dram_bytes_per_cycle=0.5"]).memory.dram_bytes_per_cycle == 0.5


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


def test_boolean_keys_take_true_or_false_only(tmp_path):
    assert load_arch("cnvlutin", ["cnvlutin.pack_taps=true"]).cnvlutin.pack_taps is True
    assert error_of("cnvlutin", ["cnvlutin.pack_taps=1"]) == (
        "--set cnvlutin.pack_taps: cnvlutin.pack_taps must be true or false, got 1"
    )
    path = tmp_path / "a.toml"
    path.write_text('[arch]\ndataflow = "cnvlutin"\n[cnvlutin]\npack_taps = "no"\n')
    assert error_of(str(path)) == f"{path}: cnvlutin.pack_taps must be true or false, got 'no'"


def test_override_errors():
    assert error_of("eie64", ["eie.fifo_dpeth=4"]) == (
        "--set: unknown key 'eie.fifo_dpeth' (did you mean 'eie.fifo_depth'?)"
    )
    assert error_of("eie64", ["eie.fifo_depth=x"]) == (
        "--set eie.fifo_depth: eie.fifo_depth must be an integer, got 'x'"
    )
    assert error_of("eie64", ["eie.num_pes=0"]) == "--set eie.num_pes: eie.num_pes must be >= 1 and <= 4096, got 0"
    assert "expected section.key=value" in error_of("eie64", ["eie.num_pes"])
    assert "expected section.key=value" in error_of("eie64", ["num_pes=3"])


def test_override_applies_before_validation(tmp_path):
    path = write(tmp_path, "[eie]\nnum_pes = 0\n")
    assert load_arch(path, ["eie.num_pes=4"]).eie.num_pes == 4


def test_to_dict_round_trip_and_with_sparsity(tmp_path):
    cfg = load_arch("eie64")
    d = cfg.to_dict()
    assert set(d) == {"arch", "eie", "cnvlutin", "scnn", "systolic", "sparsity", "topk", "memory", "energy"}
    # writing the dict back as TOML gives the same configuration
    lines = []
    for section, table in d.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    again = load_arch(write(tmp_path, "\n".join(lines) + "\n"))
    assert again == cfg and again.to_dict() == d
    assert load_arch("eie64", ["eie.fifo_depth=4"]) != cfg
    dense = cfg.with_sparsity("none", "none")
    assert (dense.sparsity.activations, dense.sparsity.weights) == ("none", "none")
    assert dense.eie == cfg.eie and dense != cfg
    assert dense.with_sparsity("skip", "skip") == cfg
    with pytest.raises(AccelsimError, match="sparsity.weights must be one of"):
        cfg.with_sparsity("skip", "skipp")
    assert isinstance(cfg, ArchConfig)


@pytest.mark.parametrize("args, phrase", [
    (["--set", "eie.num_pes=1000000000"], "--set eie.num_pes: eie.num_pes must be >= 1 and <= 4096"),
    (["--set", "eie.fifo_depth=1000000000"], "eie.fifo_depth must be >= 1 and <= 65536"),
    (["--set", "arch.clock_mhz=inf"], "arch.clock_mhz must be a finite number"),
    (["--set", "memory.dram_bytes_per_cycle=1e-300"], "memory.dram_bytes_per_cycle must be 0 or >= 0.001"),
    (["--arch", "ARCH"], "arch.toml: cnvlutin.lanes must be >= 1 and <= 1024, got 100000"),
    (["--energy", "ENERGY"], "energy.toml: events.dram_byte.pj must be >= 0 and <= 1e+06, got 1e+308"),
])
def test_run_refuses_bad_numbers_with_one_line_and_exit_2(tmp_path, capsys, args, phrase):
    from accelsim.cli import main
    from accelsim.energy import DEFAULT_TABLE, _PRESETS
    from importlib import resources

    arch = write(tmp_path, '[arch]\ndataflow = "cnvlutin"\n[cnvlutin]\nlanes = 100000\n')
    text = resources.files("accelsim.presets").joinpath(_PRESETS[DEFAULT_TABLE]).read_text()
    energy = tmp_path / "energy.toml"
    energy.write_text(text.replace("[events.dram_byte]\npj = ", "[events.dram_byte]\npj = 1e308 #"))
    args = [{"ARCH": arch, "ENERGY": str(energy)}.get(a, a) for a in args]
    out = tmp_path / "r.csv"
    trace = tmp_path / "t.trace.safetensors"
    trace.write_bytes(b"")  # never read: the configuration is refused first
    with pytest.raises(SystemExit) as info:
        main(["run", "--trace", str(trace), "--out", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and not out.exists()
    assert err.startswith("error: ") and "\n" not in err and phrase in err, err
