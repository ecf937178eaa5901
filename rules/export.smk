rule export:
    """A self-contained bundle per model and ensemble (see xmc.bundle): what `python -m xmc predict`
    and `xmc.load` use. Files are hard links into results/ where possible, so it costs no disk."""
    input:
        unpack(export_inputs),
    output:
        directory(f"{R}/{{dataset}}/models/{{model}}"),
    log:
        f"{R}/logs/{{dataset}}/export.{{model}}.log",
    params:
        bundle=export_settings,
        code=code_version("export.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/export.py"
