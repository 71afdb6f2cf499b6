"""Sizes, calendar, marginals and hidden-model weights of the synthetic KuaiRand generator.

Figures marked "real" were counted on the public KuaiRand files (Pure unless stated); the generator
modules (population, impressions, model) read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scale:
    """Sizes of one KuaiRand version: users and videos in the feature files, standard/random log rows."""

    users: int
    items: int
    standard: int
    random: int


REAL = {"pure": Scale(27_285, 7_583, 1_436_609, 1_186_059),
        "1k": Scale(1_000, 4_369_953, 11_713_045, 43_028),
        "27k": Scale(27_285, 32_038_725, 322_278_385, 1_186_059)}  # fmt: skip
# Standard-log positive rates of KuaiRand-Pure (KuaiSim notebook): the calibration targets.
RATES = {"is_click": 0.4597, "long_view": 0.3318, "is_like": 0.0185, "is_comment": 0.0025,
         "is_forward": 0.00096, "is_follow": 0.00107, "is_hate": 0.00049}  # fmt: skip
DAY_MS, HOUR_MS, CST_MS = 86_400_000, 3_600_000, 8 * 3_600_000
T_START, T_SPLIT, T_END = 1_649_347_200_000, 1_650_556_800_000, 1_652_025_600_000  # 04-08, 04-22, 05-09 UTC+8
PERIODS = np.array([[T_START, T_SPLIT], [T_SPLIT, T_END]], np.int64)
FIRST_SHARE = 83_961_282 / (83_961_282 + 21_765_075)  # real Pure: bytes of the 04-08..04-21 standard file
TABS = {1: 1_058_389, 0: 178_087, 4: 93_165, 2: 48_364, 6: 42_785, 5: 4_169, 3: 4_014, 8: 3_909,
        12: 1_472, 11: 725, 7: 504, 9: 444, 13: 399, 10: 152, 14: 31}  # fmt: skip
TAB_EFFECT = {9: 6.0, 10: 6.0, 14: -6.0, 0: -0.3, 2: 0.2, 4: -0.2}  # real CTR ~100 % in tabs 9/10, ~0 in 14
# Share of sessions starting in each hour of the day (UTC+8): quiet nights, an evening peak.
HOUR_WEIGHT = np.array([3, 2, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 5, 5, 5, 5, 6, 7, 8, 9, 9, 8, 5], float)
DEGREES = (("full_active", 17_959, 0.3), ("high_active", 6_158, 0.15), ("middle_active", 2_133, 0.0),
           ("2_14_day_new", 635, -0.1), ("low_active", 300, -0.2), ("single_low_active", 68, -0.3),
           ("30day_retention", 15, -0.2), ("day_new", 11, -0.2), ("UNKNOWN", 6, 0.0))  # fmt: skip
UPLOAD_TYPES = (("LongImport", 2925), ("Web", 2416), ("ShortImport", 917), ("Kmovie", 879),
                ("LongPicture", 143), ("UNKNOWN", 80), ("PictureSet", 73), ("LongCamera", 64),
                ("ShortCamera", 43), ("ShareFromOtherApp", 29), ("FollowShoot", 10), ("AiCutVideo", 2),
                ("PhotoCopy", 1), ("LipsSync", 1))  # fmt: skip
MUSIC_TYPES = ((9.0, 6665), (4.0, 657), (8.0, 41), (7.0, 14), (11.0, 3))
# (bin edges for np.searchsorted, side, labels) of the four range columns, checked on the real file.
RANGES = {
    "follow_user_num": ([0, 10, 50, 100, 150, 250, 500], "left",
                        ["0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]", "(250,500]", "500+"]),
    "fans_user_num": ([1, 10, 100, 1_000, 5_000, 10_000, 100_000, 1_000_000], "right",
                      ["0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)", "[10w,100w)",
                       "[100w,1000w)"]),
    "friend_user_num": ([1, 5, 30, 60, 120, 250], "right",
                        ["0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)", "250+"]),
    "register_days": ([15, 31, 61, 91, 181, 366, 731], "right",
                      ["8-14", "15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+"]),
}  # fmt: skip
ONEHOT_CARD = (2, 7, 50, 1471, 16, 34, 3, 118, 454, 7, 5, 5)  # onehot_feat0..11 (12..17 are binary)
ONEHOT_ZIPF = (0.3, 0.6, 1.3, 1.1, 0.8, 4.0, 1.5, 1.0, 0.6, 0.5, 0.8, 2.0)
USER_EFFECT_FEATS = (1, 6, 9, 10)  # one-hots that shift the click logit
# Weights of the hidden model (affinity s, user propensities, item effect b_i) per behaviour. Hate's taste
# weight is small: at -1.0 its 0.05 % rate was an average carried by a few extreme-taste rows (±14 % between
# seeds on a 15k-row log).
COEF = {"is_like": (1.2, 0.7, 0.5), "is_comment": (0.8, 0.7, 0.0), "is_forward": (0.8, 0.7, 0.3),
        "is_follow": (0.8, 0.7, 0.0), "is_hate": (-0.6, 0.7, -0.5), "play_s": 0.5, "play_b": 0.3,
        "play_duration": 0.4, "play_sigma": 0.9}  # fmt: skip
DIM, CANDIDATES, CALIBRATION_ROWS, SMALL_CALIBRATION = 8, 4, 200_000, 60_000
# Taste strength: z_u ~ N(0, TASTE_SD² / D) per dim, so the affinity s = z_u · v_i has sd ~2 and a popularity
# list reaches ~1/3 of the per-user top-6's gain over random (1.5 gave sd 1.2 and ~1/2-3/5: too little headroom
# for personalised policies, issue 14). ITEM_NOISE: a video's taste vector beyond its tags (tags carry ~90 %).
TASTE_SD, ITEM_NOISE = 2.5, 0.25
