rule tfidf:
    """phi_tfidf: fit on the training texts, transform every split."""
    input:
        train=f"{R}/{{dataset}}/prepared/train.txt",
        valid=f"{R}/{{dataset}}/prepared/valid.txt",
        test=f"{R}/{{dataset}}/prepared/test.txt",
    output:
        X_train=f"{R}/{{dataset}}/tfidf/X.train.npz",
        X_valid=f"{R}/{{dataset}}/tfidf/X.valid.npz",
        X_test=f"{R}/{{dataset}}/tfidf/X.test.npz",
        vectorizer=f"{R}/{{dataset}}/tfidf/vectorizer.npz",
    log:
        f"{R}/logs/{{dataset}}/tfidf.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/tfidf.tsv"
    params:
        tfidf=CFG["tfidf"],
        code=code_version("tfidf.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/tfidf.py"


rule tfidf_char:
    """phi_char (the linear inputs char and tfidf+char): TF-IDF over character n-grams, fit on the
    training texts."""
    input:
        train=f"{R}/{{dataset}}/prepared/train.txt",
        valid=f"{R}/{{dataset}}/prepared/valid.txt",
        test=f"{R}/{{dataset}}/prepared/test.txt",
    output:
        X_train=f"{R}/{{dataset}}/tfidf-char/X.train.npz",
        X_valid=f"{R}/{{dataset}}/tfidf-char/X.valid.npz",
        X_test=f"{R}/{{dataset}}/tfidf-char/X.test.npz",
        vectorizer=f"{R}/{{dataset}}/tfidf-char/vectorizer.npz",
    log:
        f"{R}/logs/{{dataset}}/tfidf_char.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/tfidf_char.tsv"
    params:
        tfidf=CFG["tfidf_char"],
        code=code_version("tfidf.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/tfidf.py"


rule tokenize:
    """Token ids of one split for one encoder (its own tokenizer and max length)."""
    input:
        f"{R}/{{dataset}}/prepared/{{split}}.txt",
    output:
        f"{R}/{{dataset}}/tokens/{{encoder}}/{{split}}.npz",
    log:
        f"{R}/logs/{{dataset}}/tokenize.{{encoder}}.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/tokenize.{{encoder}}.{{split}}.tsv"
    params:
        model=encoder_model,
        max_length=encoder_max_length,
        code=code_version("tokenize_texts.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/tokenize_texts.py"


rule embed_pretrained:
    """phi_pre: mean-pooled last-layer states of the pretrained (not fine-tuned) encoder, every split."""
    input:
        train=f"{R}/{{dataset}}/prepared/train.txt",
        valid=f"{R}/{{dataset}}/prepared/valid.txt",
        test=f"{R}/{{dataset}}/prepared/test.txt",
    output:
        emb_train=f"{R}/{{dataset}}/pretrained/{{encoder}}/emb.train.npy",
        emb_valid=f"{R}/{{dataset}}/pretrained/{{encoder}}/emb.valid.npy",
        emb_test=f"{R}/{{dataset}}/pretrained/{{encoder}}/emb.test.npy",
    log:
        f"{R}/logs/{{dataset}}/embed_pretrained.{{encoder}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/embed_pretrained.{{encoder}}.tsv"
    params:
        model=encoder_model,
        max_length=encoder_max_length,
        batch_size=CFG["text_emb"]["batch_size"],
        precision=pretrained_precision,
        code=code_version("embed_pretrained.py"),
    threads: gpu_threads(ONE_GPU)
    resources:
        gpu=ONE_GPU,
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/embed_pretrained.py"
