"""Tiny random encoders with working fast tokenizers, built offline for tests.

``make_tiny_encoder(kind, folder)`` writes a Hugging Face model folder (config, weights, tokenizer)
that ``AutoModel`` / ``AutoTokenizer`` load like a real checkpoint, so tests of every stage can use
BERT-, RoBERTa- and XLNet-style encoders without touching the network. Models are a few hundred
kilobytes: 2 layers, hidden size 32.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# Enough varied words for the tokenizers to learn sub-words; tests also use these words as keywords.
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "apple banana cherry grape lemon mango orange peach pear plum",
    "red green blue yellow black white purple orange pink brown",
    "one two three four five six seven eight nine ten",
    "music sports politics science history finance health travel food",
    "alpha beta gamma delta epsilon zeta eta theta iota kappa",
    "a document about sports and the latest football match results",
    "a report on politics elections and the new government policy",
    "science news: physics chemistry biology and space research",
    "finance markets stocks bonds and the central bank interest rates",
    "European Union regulation on agriculture fisheries and trade",
    "Hello, world! Numbers 123 456 and punctuation; (brackets) - dashes.",
]
KINDS = ("bert", "roberta", "xlnet")
_SIZE = dict(hidden=32, layers=2, heads=2, inner=64, positions=288)


def _words() -> list[str]:
    words = sorted({w for line in CORPUS for w in line.lower().replace(",", " ").split()})
    return words


def _bert(folder: Path, size: dict):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # Single characters keep every word tokenisable through WordPiece continuations.
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?()-'\""))
    vocab = specials + _words() + chars + [f"##{c}" for c in chars]
    vocab = list(dict.fromkeys(vocab))
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=512)
    config = BertConfig(vocab_size=len(vocab), hidden_size=size["hidden"],
                        num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
                        intermediate_size=size["inner"], max_position_embeddings=size["positions"],
                        pad_token_id=0)
    return tok, BertModel(config)


def _roberta(folder: Path, size: dict):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))  # vocab.json + merges.txt
    tok = RobertaTokenizerFast(vocab_file=str(folder / "vocab.json"),
                               merges_file=str(folder / "merges.txt"), model_max_length=512)
    (folder / "vocab.json").unlink()
    (folder / "merges.txt").unlink()
    config = RobertaConfig(vocab_size=tok.vocab_size, hidden_size=size["hidden"],
                           num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
                           intermediate_size=size["inner"],
                           max_position_embeddings=size["positions"] + 2,  # RoBERTa offsets by pad+1
                           pad_token_id=tok.pad_token_id, bos_token_id=0, eos_token_id=2)
    return tok, RobertaModel(config)


def _xlnet(folder: Path, size: dict):
    # XLNet's tokenizer is a sentencepiece Unigram model; train one with `tokenizers` (no
    # sentencepiece package needed) and wire it up the way transformers' XLNetConverter does.
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors, trainers
    from transformers import XLNetConfig, XLNetModel, XLNetTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
    tk = Tokenizer(models.Unigram())
    tk.normalizer = normalizers.Sequence([
        normalizers.Replace("``", '"'), normalizers.Replace("''", '"'),
        normalizers.NFKD(), normalizers.StripAccents(), normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False)
    tk.train_from_iterator(CORPUS, trainer=trainer)
    cls_id, sep_id = tk.token_to_id("<cls>"), tk.token_to_id("<sep>")
    tk.post_processor = processors.TemplateProcessing(
        single="$A:0 <sep>:0 <cls>:2", pair="$A:0 <sep>:0 $B:1 <sep>:1 <cls>:2",
        special_tokens=[("<sep>", sep_id), ("<cls>", cls_id)])
    tok = XLNetTokenizerFast(tokenizer_object=tk, model_max_length=512)
    assert tok.padding_side == "left"
    config = XLNetConfig(vocab_size=tk.get_vocab_size(), d_model=size["hidden"],
                         n_layer=size["layers"], n_head=size["heads"], d_inner=size["inner"],
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id)
    return tok, XLNetModel(config)


_BUILDERS = {"bert": _bert, "roberta": _roberta, "xlnet": _xlnet}


def make_tiny_encoder(kind: str, folder, **size) -> Path:
    """Write a tiny random ``kind`` encoder ("bert", "roberta" or "xlnet") with its fast tokenizer
    into ``folder`` (created if needed) and return the folder. Deterministic: seeded weights.
    ``size`` overrides the default shape (hidden=32, layers=2, heads=2, inner=64, positions=288),
    e.g. ``hidden=128`` for wider embeddings."""
    if kind not in _BUILDERS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    unknown = set(size) - set(_SIZE)
    if unknown:
        raise ValueError(f"unknown size keys {sorted(unknown)}; known: {sorted(_SIZE)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tok, model = _BUILDERS[kind](folder, {**_SIZE, **size})
    tok.save_pretrained(str(folder))
    model.save_pretrained(str(folder))
    return folder
