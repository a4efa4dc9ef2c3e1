"""Render a reproduced table as Markdown and LaTeX (booktabs)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RenderedTable:
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        cols = "l" + "r" * (len(self.header) - 1)
        body = [" & ".join(_tex(c) for c in row) + r" \\" for row in self.rows]
        notes = "\n".join(rf"\item {_tex(n)}" for n in self.notes)
        out = [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{_tex(self.title)}}}",
            rf"\begin{{tabular}}{{{cols}}}",
            r"\toprule",
            " & ".join(_tex(h) for h in self.header) + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
        ]
        if notes:
            out += [r"\begin{itemize}\footnotesize", notes, r"\end{itemize}"]
        out.append(r"\end{table}")
        return "\n".join(out) + "\n"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
}


def _tex(text: str) -> str:
    out = "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)
    for symbol, tex in (("→", r"$\rightarrow$"), ("≈", r"$\approx$"), ("×", r"$\times$"), ("≠", r"$\neq$"), ("≤", r"$\leq$")):
        out = out.replace(symbol, tex)
    return out


def fmt_count(n: float) -> str:
    """Thesis style: 1.28M, 990K, 13M."""
    if n >= 1e6:
        return f"{n / 1e6:.2f}".rstrip("0").rstrip(".") + "M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}".rstrip("0").rstrip(".") + "K"
    return f"{int(n)}"
