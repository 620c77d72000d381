# Figures and tables of the HTML report (`snakemake --report results/report.html`): one rule
# for all of them, driven by REPORT_FIGURES (common.smk: output -> `gpvae figures <figure>`
# call, inputs, report category); captions in workflow/report/figures.rst, what each shows
# in docs/report.md.


rule report_figure:
    input:
        unpack(lambda w: REPORT_FIGURES[w.path]["inputs"]),
    output:
        report(
            f"{RP}/{{path}}",
            caption="../report/figures.rst",
            category=lambda w: REPORT_FIGURES[w.path]["category"],
            subcategory=lambda w: REPORT_FIGURES[w.path]["subcategory"],
        ),
    log:
        f"{R}/logs/report/{{path}}.log",
    wildcard_constraints:
        path="|".join(re.escape(p) for p in REPORT_FIGURES) or "NO_FIGURE",
    conda:
        ENV
    params:
        figure=lambda w: REPORT_FIGURES[w.path]["figure"],
        args=figure_args,
        band=lambda w: REPORT_FIGURES[w.path].get("band", ""),
        tile=lambda w: REPORT_FIGURES[w.path].get("tile", ""),
        sensor=GAPFILL_SENSOR or MAP_SENSOR,
    message:
        "Report: {params.figure} ({wildcards.path})"
    shell:
        "python -m gpvae.cli figures {params.figure} {params.args} --out {output:q} "
        "> {log} 2>&1"


#: Every report figure and table (`rule all` builds them when models are configured).
REPORT_TARGETS = [f"{RP}/{p}" for p in REPORT_FIGURES]
