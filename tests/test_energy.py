"""Energy tables: shipped default is complete and sourced; bad tables give one clear line."""

import pytest

from accelsim.energy import load_energy_table, parse_energy_table
from accelsim.errors import AccelsimError
from accelsim.result import EVENTS


def test_default_table_covers_every_event_with_a_source():
    table = load_energy_table("default")
    assert set(table.pj) == set(EVENTS)
    assert all(table.sources[e].strip() for e in EVENTS)
    # idle PEs are not free: the clock costs something every PE-cycle
    assert table.pj["pe_cycle"] > 0


def test_energy_is_count_times_pj_per_component():
    table = load_energy_table("default")
    out = table.energy_pj({"mac": 10, "dram_byte": 2})
    assert out["mac"] == pytest.approx(10 * table.pj["mac"])
    assert out["dram_byte"] == pytest.approx(2 * table.pj["dram_byte"])
    assert out["weight_read"] == 0


def _table(extra: str = "", drop: str | None = None) -> str:
    lines = ["[table]", 'name = "t"', "version = 1", 'units = "pJ"']
    for event in EVENTS:
        if event == drop:
            continue
        lines += [f"[events.{event}]", "pj = 1.0", 'source = "test"']
    return "\n".join(lines) + "\n" + extra


@pytest.mark.parametrize(
    "text, message",
    [
        (_table(drop="mac"), "missing energy for event(s): mac"),
        (_table("[events.macc]\npj = 1.0\nsource = 'x'\n"), "unknown event 'events.macc'"),
        (_table().replace("version = 1", "version = 7"), "unsupported energy table version 7"),
        (_table().replace("pj = 1.0", "pj = -1.0", 1), "events.mac.pj must be >= 0 and <= 1e+06, got -1.0"),
        (_table().replace("pj = 1.0", "pj = 1e308", 1), "events.mac.pj must be >= 0 and <= 1e+06, got 1e+308"),
        (_table().replace("pj = 1.0", "pj = nan", 1), "events.mac.pj must be a finite number >= 0 and <= 1e+06, got nan"),
        (_table().replace("pj = 1.0", "pj = inf", 1), "events.mac.pj must be a finite number"),
        (_table().replace("pj = 1.0", "pj = 100000000000000000000", 1), "events.mac.pj must be >= 0 and <= 1e+06, got 1e+20"),
        (_table().replace("pj = 1.0", 'pj = "one"', 1), "must be a number"),
        (_table().replace('source = "test"', 'source = ""', 1), "must say where the number comes from"),
        ("[table\n", "invalid TOML"),
    ],
)
def test_bad_tables_give_one_clear_line(text, message):
    with pytest.raises(AccelsimError) as info:
        parse_energy_table(text, "my.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("my.toml: ")
    assert "\n" not in str(info.value)


def test_missing_table_file(tmp_path):
    with pytest.raises(AccelsimError, match="energy table not found"):
        load_energy_table(tmp_path / "nope.toml")
