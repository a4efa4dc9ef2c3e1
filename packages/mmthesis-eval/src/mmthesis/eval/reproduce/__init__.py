"""`mmthesis reproduce`: regenerate thesis tables from specs in ``reproductions/``.

A spec holds the published cells and says how each can be reproduced; the
engine computes what the chosen scale allows (reusing finished runs) and
renders Markdown and LaTeX with the published and reproduced values side by
side. A cell that a scale cannot reproduce says why instead of a number.
"""
