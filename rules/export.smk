rule export:
    """A self-contained bundle per model and ensemble (see xmc.bundle): what `python -m xmc predict`
    and `xmc.load` use. Its files are copies (copy-on-write clones where the file system makes
    them), so editing a bundle cannot reach results/ or another bundle."""
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
