"""CLI commands of the radiation physics (``source-qa``): parse, call the library, print."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""

    @app.command("source-qa")
    def source_qa(
        source: Path = typer.Argument(..., help="TG-43 source YAML (layout of shared/data/tg43, e.g. *.consensus.yaml)."),
        csv: bool = typer.Option(False, "--csv", help="Print the table as CSV in the consensus QA sheet layout."),
        out: Path | None = typer.Option(None, "--out", help="Also write the CSV to this file."),
    ) -> None:
        """Along-away QA table (dose rate per unit S_K, cGy h⁻¹ U⁻¹; z + towards the tip) for commissioning."""
        from rich.console import Console
        from rich.table import Table

        from latplan.physics import tg43

        src = tg43.load_source(source)
        text = tg43.format_along_away_csv(src)
        if out is not None:
            out.write_text(text, encoding="utf-8")
        if csv:
            typer.echo(text, nl=False)
            return
        table = tg43.along_away_table(src)
        t = Table(title=f"{src.name}: dose rate per unit S_K (cGy h⁻¹ U⁻¹), Λ = "
                        f"{src.dose_rate_constant_cgy_per_h_per_u:g}, L = {src.active_length_cm:g} cm")
        t.add_column("z \\ y (cm)", justify="right", no_wrap=True)
        for y in tg43.QA_Y_CM:
            t.add_column(f"{y:g}", justify="right", no_wrap=True, min_width=8)
        for z, row in zip(tg43.QA_Z_CM, table, strict=True):
            t.add_row(f"{z:g}", *(f"{v:.4g}" if not (z == 0 and y == 0) else "—" for y, v in zip(tg43.QA_Y_CM, row,
                                                                                                  strict=True)))
        console = Console(width=max(Console().width, 150))
        console.print(t)
        console.print("(0, 0) lies inside the source and is not reported; r < r_min is clamped (docs/radiation-physics.md).")
