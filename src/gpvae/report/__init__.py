"""gpvae.report: the figures and tables of the Snakemake HTML report (matplotlib Agg, seaborn).

One module per report section (data, training, gap filling, classification, maps, cost), a
shared model-colour palette (:mod:`gpvae.report.palette`), and :func:`make_report_figures`,
the entry point the ``gpvae figures`` command calls.
"""

from __future__ import annotations
