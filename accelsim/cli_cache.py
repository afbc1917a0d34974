"""`accelsim cache info|clear`: the encoding cache (accelsim.diskcache) seen and emptied.

Only click is imported at module level.
"""

from __future__ import annotations

import click


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@click.group("cache")
def cache_group() -> None:
    """The encoding cache: weight-side encodings and remembered checks of traces
    ($ACCELSIM_CACHE, bounded by $ACCELSIM_CACHE_SIZE)."""


@cache_group.command("info")
def info_cmd() -> None:
    """Where the cache is, how much it holds and its size limit."""
    import time

    from accelsim import diskcache

    found = diskcache.info()
    click.echo(f"path: {found['path']}")
    if found["path"] == "off":
        click.echo("the cache is off (ACCELSIM_CACHE=off)")
        return
    click.echo(f"entries: {found['entries']}")
    click.echo(f"size: {_size(found['bytes'])} of {_size(found['limit'])} "
               f"(least recently used entries are removed beyond it; {diskcache.SIZE_ENV})")
    if found["newest"] is not None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(found["oldest"]))
        click.echo(f"least recently used: {stamp}")


@cache_group.command("clear")
def clear_cmd() -> None:
    """Remove every entry (files of other programs in the folder are left alone)."""
    from accelsim import diskcache

    if diskcache.cache_dir() is None:
        click.echo("the cache is off (ACCELSIM_CACHE=off): nothing to clear")
        return
    count, size = diskcache.clear()
    click.echo(f"removed {count} entries ({_size(size)}) from {diskcache.cache_dir()}")


def register(cli: click.Group) -> None:
    cli.add_command(cache_group)
