"""The tfidf stage warns when the word tokenizer suits the texts badly, and char_wb is the way out."""
from __future__ import annotations

import pytest

from xmc.features import TfidfParams, fit_tfidf, tokenization_warning, transform_tfidf

CHINESE = ["欧盟委员会关于从突尼斯进口橄榄油的条例", "关于渔业政策和农业补贴的理事会决定",
           "委员会关于橄榄油市场的条例和农业政策", "理事会关于渔业资源保护的决定和条例"] * 5
JAPANESE = ["欧州委員会はチュニジアからのオリーブ油の輸入に関する規則を定めた",
            "漁業政策と農業補助金に関する理事会の決定"] * 5
THAI = ["คณะกรรมาธิการยุโรปออกระเบียบเกี่ยวกับการนำเข้าน้ำมันมะกอก", "นโยบายการประมงและการเกษตร"] * 5
ENGLISH = ["Commission Regulation on the import of olive oil from Tunisia",
           "Council Decision on fisheries policy and agricultural subsidies"] * 5


@pytest.mark.parametrize("texts", [CHINESE, JAPANESE, THAI], ids=["zh", "ja", "th"])
def test_text_without_spaces_warns_and_names_the_setting(texts):
    warning = tokenization_warning(texts, TfidfParams())
    assert warning is not None and "scripts written without spaces" in warning
    assert "tfidf.analyzer: char_wb" in warning
    assert tokenization_warning(texts, TfidfParams(analyzer="char_wb", ngram_range=(1, 3))) is None


def test_spaced_text_does_not_warn():
    assert tokenization_warning(ENGLISH, TfidfParams()) is None


def test_the_char_setting_gives_unseen_chinese_sentences_features():
    """With words, a new sentence is one unknown token (no feature); with char_wb n-grams it shares
    the characters of the training sentences."""
    new = ["委员会关于进口橄榄油的决定"]
    word, _ = fit_tfidf(CHINESE, TfidfParams(min_df=1))
    assert transform_tfidf(word, new).nnz == 0
    char, _ = fit_tfidf(CHINESE, TfidfParams(analyzer="char_wb", ngram_range=(1, 3), min_df=1))
    assert transform_tfidf(char, new).nnz > 10


def test_one_letter_words_point_at_the_tokenizer_not_stop_words():
    with pytest.raises(ValueError, match="the word tokenizer keeps only tokens of two or more letters"):
        fit_tfidf(["a b c", "d e f"], TfidfParams(min_df=1))
