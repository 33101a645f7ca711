"""The warm-up command of latplan.physics.warmup (numba cache filling, used by CI)."""

from __future__ import annotations


def test_warmup_command_refuses_an_unknown_family(capsys) -> None:  # type: ignore[no-untyped-def]
    """`python -m latplan.physics.warmup FAMILY ...` (CI splits the families over two processes): a name
    that is not a kernel family is a clear error naming the choices (reference: FAMILIES), nothing compiled."""
    from latplan.physics.warmup import FAMILIES, main

    assert main(["tg43", "heat"]) == 2
    err = capsys.readouterr().err
    assert "unknown kernel family heat" in err and all(name in err for name in FAMILIES)
