rule download:
    """Fetch the dataset (URL with sha256, local archive or folder) and unpack it."""
    input:
        download_input,
    output:
        directory(f"{R}/{{dataset}}/raw"),
    log:
        f"{R}/logs/{{dataset}}/download.log",
    params:
        source=download_source,
        sha256=download_sha256,
        cap=download_cap,
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/download.py"


rule prepare:
    """Parse the raw dataset into the canonical form (texts, CSR labels, label names and text) with
    its train / valid / test splits (valid: the data's own, else held out of train)."""
    input:
        f"{R}/{{dataset}}/raw",
    output:
        train=f"{R}/{{dataset}}/prepared/train.txt",
        valid=f"{R}/{{dataset}}/prepared/valid.txt",
        test=f"{R}/{{dataset}}/prepared/test.txt",
        Y_train=f"{R}/{{dataset}}/prepared/Y.train.npz",
        Y_valid=f"{R}/{{dataset}}/prepared/Y.valid.npz",
        Y_test=f"{R}/{{dataset}}/prepared/Y.test.npz",
        label_names=f"{R}/{{dataset}}/prepared/label_names.txt",
        label_text=f"{R}/{{dataset}}/prepared/label_text.txt",
        meta=f"{R}/{{dataset}}/prepared/meta.json",
    log:
        f"{R}/logs/{{dataset}}/prepare.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/prepare.tsv"
    params:
        format=dataset_format,
        options=dataset_reader_options,
        subsample=dataset_subsample,
        validation=validation_params,
        code=code_version("prepare.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/prepare.py"


rule fetch_encoders:
    """Every hub encoder the config names, into the Hugging Face cache ($HF_HOME): run on the submit
    host (`snakemake fetch_encoders`), whose compute nodes may have no internet."""
    output:
        f"{R}/encoders/fetched.json",
    log:
        f"{R}/logs/fetch_encoders.log",
    params:
        models=encoder_specs(),
        code=code_version("fetch_encoders.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/fetch_encoders.py"


# Downloads run on the host that runs Snakemake (a cluster's login node has the internet).
localrules:
    download,
    fetch_encoders,
