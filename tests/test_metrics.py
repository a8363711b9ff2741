"""Properties of the objective measures (vconv.evaluation.metrics) and of the pretrained judges (vconv.evaluation.judges)."""

from __future__ import annotations

import importlib.util
import itertools
import sys

import numpy as np
import pytest

from tests.conftest import voiced_signal
from vconv.errors import VconvError
from vconv.evaluation import metrics as M
from vconv.evaluation import pitch_judge as P

SR = 16000


def _with_noise(x: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(x.size)
    noise *= np.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


@pytest.fixture(scope="module")
def voice():
    """A 1 s voiced test signal with its analyses: (wav [T], the pitch judge's f0 [F], WORLD's mcep [F, 25])."""
    x = voiced_signal(1.0)
    return x, P.f0_contour(x, SR), M.mel_cepstrum(x, SR)


# ------------------------------------------------------------------------------------------- text


def test_normalize_text():
    assert M.normalize_text("  Don't STOP—now!  Well-known. ") == "dont stop now well known"
    assert M.normalize_text("“Quoted,” she said…") == "quoted she said"


@pytest.mark.parametrize(
    "ref, hyp, dist",
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("abc", "abc", 0), ("flaw", "lawn", 2),
     (["a", "b", "c"], ["a", "c"], 1), ("abcdef", "azced", 3)],
)
def test_edit_distance(ref, hyp, dist):
    assert M.edit_distance(ref, hyp) == dist


def test_edit_distance_matches_plain_dynamic_programming():
    rng = np.random.default_rng(0)

    def slow(a, b):
        d = np.arange(len(b) + 1)
        for i, x in enumerate(a, 1):
            prev, d[0] = d.copy(), i
            for j, y in enumerate(b, 1):
                d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (x != y))
        return int(d[-1])

    for _ in range(30):
        a = "".join(rng.choice(list("abc "), rng.integers(0, 12)))
        b = "".join(rng.choice(list("abc "), rng.integers(0, 12)))
        assert M.edit_distance(a, b) == slow(a, b), (a, b)


def test_cer_of_exact_text_is_zero_and_errors_count():
    assert M.cer("The sky that morning was clear.", "the sky, that morning was clear") == 0.0
    assert M.wer("The sky that morning was clear.", "the sky that morning was clear") == 0.0
    er = M.error_rates("Mend the coat before you go out.", "Then the coat before you go out")
    assert (er.word_errors, er.words, er.wer) == (1, 7, pytest.approx(1 / 7))
    assert er.char_errors == 3 and er.chars == len("mend the coat before you go out")  # mend→then: m→t, +h, -d
    assert M.cer("", "") == 0.0 and M.cer("", "x") == 1.0


# --------------------------------------------------------------------------------------- spectrum


def test_dtw_matches_brute_force_and_recovers_a_stretch():
    rng = np.random.default_rng(0)
    cost = rng.random((7, 9))
    i, j, total = M.dtw(cost)
    acc = np.full((8, 10), np.inf)
    acc[0, 0] = 0
    for a, b in itertools.product(range(1, 8), range(1, 10)):
        acc[a, b] = cost[a - 1, b - 1] + min(acc[a - 1, b - 1], acc[a - 1, b], acc[a, b - 1])
    assert total == pytest.approx(acc[7, 9])
    assert cost[i, j].sum() == pytest.approx(total)
    assert (i[0], j[0], i[-1], j[-1]) == (0, 0, 6, 8)
    assert np.all(np.diff(i) >= 0) and np.all(np.diff(j) >= 0) and np.all(np.diff(i) + np.diff(j) >= 1)

    x = rng.standard_normal((20, 3))
    y = np.repeat(x, 2, axis=0)  # the same sequence at half speed
    local = np.linalg.norm(x[:, None] - y[None], axis=2)
    i, j, total = M.dtw(local)
    assert total == pytest.approx(0.0)
    assert np.array_equal(i, j // 2)


def test_mcep_alpha_table():
    assert M.mcep_alpha(16000) == pytest.approx(0.42)
    assert M.mcep_alpha(22050) == pytest.approx(0.45)
    assert 0.42 < M.mcep_alpha(20000) < 0.45


def test_mcd_of_a_signal_with_itself_is_zero_and_grows_with_noise(voice):
    x, f0, mcep = voice
    assert mcep.shape == (len(f0), M.MCD_ORDER + 1)
    assert M.mcd_dtw(mcep, mcep).mcd == pytest.approx(0.0, abs=1e-6)
    assert M.mcd(mcep, mcep) == pytest.approx(0.0, abs=1e-6)
    values = [M.mcd_dtw(mcep, M.mel_cepstrum(_with_noise(x, snr), SR)).mcd for snr in (30, 20, 10, 0)]
    # measured: 2.8, 5.1, 10.9, 15.6 dB
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[0] > 0.5 and values[-1] > 8.0


def test_mcd_ignores_leading_silence(voice):
    x, _, mcep = voice
    padded = np.concatenate([np.zeros(SR // 2, np.float32), x])
    assert M.mcd_dtw(mcep, M.mel_cepstrum(padded, SR)).mcd < 1.0


# ------------------------------------------------------------------------------------------- pitch


def test_f0_tracks_the_signal_and_correlates_with_itself(voice):
    _, f0, _ = voice
    voiced = f0[f0 > 0]
    assert voiced.size > 0.8 * f0.size
    assert np.median(voiced) == pytest.approx(140.0, rel=0.03)
    s = M.f0_scores(f0, f0)
    assert s.corr == pytest.approx(1.0) and s.rmse_cents == pytest.approx(0.0, abs=1e-9)
    assert s.voiced == int((f0 > 0).sum())


def test_pitch_judge_follows_a_known_contour_on_worlds_frame_grid():
    """The judge's contour: frame i at i * 5 ms (the grid of WORLD's envelope frames, as MCD's), within 2 % of the
    signal's wobbling F0 where voiced; silence and a signal too short for Praat's window are unvoiced."""
    x = voiced_signal(1.0, f0=120.0)
    f0 = P.f0_contour(x, SR)
    for n in (16000, 16080, 32160):  # 16080: where a different order of WORLD's frame-count arithmetic gave one frame less
        assert len(P.f0_contour(voiced_signal(n / SR), SR)) == len(M.world_f0(voiced_signal(n / SR), SR))
    t = np.arange(len(f0)) * M.FRAME_PERIOD_MS / 1000.0
    truth = 120.0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    voiced = f0 > 0
    assert voiced.mean() > 0.7
    assert np.median(np.abs(f0[voiced] / truth[voiced] - 1)) < 0.005  # 0.09 %; 25 ms off the grid gives 1.5 %
    assert not P.f0_contour(np.zeros(SR // 2, np.float32), SR).any()
    assert not P.f0_contour(x[:400], SR).any()  # 25 ms: shorter than three periods of 60 Hz
    assert not P.f0_contour(voiced_signal(0.05, sr=24000), 24000).any()  # exactly three periods at 24 kHz


def test_pitch_judge_keeps_to_the_recordings_own_range():
    """A stretch read far above the voice's range (a creaky phrase end a 60-700 Hz search reads an octave or two up)
    is searched again under 1.9 x q65 of the first pass; a steady voice reads the same either way."""
    steady = voiced_signal(1.0, f0=120.0)
    once, twice = P.f0_contour(steady, SR, adaptive=False), P.f0_contour(steady, SR)
    both = (once > 0) & (twice > 0)
    assert both.mean() > 0.7 and np.abs(twice[both] / once[both] - 1).max() < 0.01
    high = voiced_signal(0.15, f0=480.0, seed=3)  # 15 % of the recording two octaves up
    slip = np.concatenate([steady[: SR // 2], high, steady[SR // 2 :]])
    first = P.f0_contour(slip, SR, adaptive=False)
    assert (first > 400).sum() > 10  # the first pass reads the stretch at its 480 Hz
    ceil = P.speaker_ceiling(first, 60.0, 700.0)
    assert 120.0 < ceil < 240.0
    second = P.f0_contour(slip, SR)
    assert not second[first > ceil].any()  # left unvoiced, not read at a third of its pitch
    steady_part = (first > 0) & (first < ceil)
    assert np.abs(second[steady_part & (second > 0)] / first[steady_part & (second > 0)] - 1).max() < 0.01
    assert (second[steady_part] > 0).mean() > 0.9


def test_speaker_ceiling_needs_enough_voice_and_stays_within_the_first_search():
    assert P.speaker_ceiling(np.r_[np.zeros(50), np.full(P.RANGE_MIN_FRAMES - 1, 100.0)], 60.0, 700.0) == 700.0
    assert P.speaker_ceiling(np.full(100, 70.0), 60.0, 700.0) == pytest.approx(1.9 * 70.0)
    assert P.speaker_ceiling(np.full(100, 61.0), 60.0, 700.0) == 120.0  # at least an octave over the floor
    assert P.speaker_ceiling(np.full(100, 500.0), 60.0, 700.0) == 700.0
    assert P.speaker_ceiling(np.full(100, 70.0), 60.0, 100.0) == 100.0  # never over the caller's ceiling


def test_f0_scores_ignore_register_but_not_shape(voice):
    _, f0, _ = voice
    higher = P.f0_contour(voiced_signal(1.0, f0=210.0), SR)  # same melody a fifth up
    s = M.f0_scores(f0, higher)
    assert s.corr > 0.95 and s.rmse_cents < 15
    assert M.cents(M.log_f0_mean(higher) - M.log_f0_mean(f0)) == pytest.approx(702, abs=20)
    flipped = M.f0_scores(f0, f0[::-1].copy())  # 3 Hz wobble reversed in time: anti-correlated shape
    assert flipped.corr < s.corr - 0.5


def test_f0_scores_with_few_voiced_frames_are_nan():
    s = M.f0_scores(np.zeros(50), np.full(50, 100.0))
    assert np.isnan(s.corr) and s.voiced == 0


# ----------------------------------------------------------------------------- speaker decisions


def test_cosine():
    assert M.cosine([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert M.cosine([1, 0], [0, 1]) == pytest.approx(0.0)
    assert np.isnan(M.cosine([0, 0], [1, 1]))


def test_eer_on_constructed_scores():
    sep = M.eer([0.9, 0.8, 0.85], [0.3, 0.4, 0.5])
    assert sep.eer == 0.0 and sep.threshold == pytest.approx(0.65)  # middle of the gap
    over = M.eer([0.6, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.65])
    assert over.eer == pytest.approx(0.25) and 0.6 < over.threshold < 0.65
    assert (over.far, over.frr, over.genuine, over.impostor) == (0.25, 0.25, 4, 4)
    swapped = M.eer([0.1, 0.2], [0.8, 0.9])  # a verifier that has it backwards
    assert swapped.eer == pytest.approx(1.0)
    rng = np.random.default_rng(0)  # two unit-variance Gaussians 2 apart: EER = Phi(-1) = 0.159
    big = M.eer(rng.normal(1, 1, 20000), rng.normal(-1, 1, 20000))
    assert big.eer == pytest.approx(0.159, abs=0.01) and abs(big.threshold) < 0.05
    with pytest.raises(ValueError):
        M.eer([], [0.1])


def test_success_and_accept_rates_on_constructed_cases():
    assert M.success_rate([0.8, 0.4, 0.6], [0.5, 0.5, 0.6]) == pytest.approx(1 / 3)  # a tie is not a success
    assert M.success_rate([0.9, 0.9], [0.1, 0.2]) == 1.0
    assert M.accept_rate([0.7, 0.65, 0.2, 0.9], 0.65) == 0.75
    with pytest.raises(ValueError):
        M.success_rate([0.1], [0.1, 0.2])


# ------------------------------------------------------------------------------------------ judges

# The judges are real pretrained models from the eval extra. Each loads once per process
# (vconv.evaluation.judge_common shares the weights between instances), so these fixtures are cheap to repeat.


@pytest.fixture(scope="session")
def speaker_judge():
    from vconv.evaluation.judges import SpeakerJudge

    return SpeakerJudge()


@pytest.fixture(scope="session")
def asr_judge():
    from vconv.evaluation.judges import AsrJudge

    return AsrJudge()


def test_resemblyzer_same_voice_scores_higher_than_other_voices(speaker_judge, corpus_dir):
    files = sorted(corpus_dir.glob("*/*.wav"))
    emb = np.stack([speaker_judge.embed(f) for f in files])  # [24, 256]
    assert emb.shape == (24, 256) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    spk = np.array([f.parent.name for f in files])
    sims = emb @ emb.T
    iu = np.triu_indices(len(files), 1)
    same = spk[iu[0]] == spk[iu[1]]
    genuine, impostor = sims[iu][same], sims[iu][~same]
    # measured on these 6 voices: genuine 0.82 mean, impostor 0.52 mean, EER ~1 %
    assert genuine.mean() > impostor.mean() + 0.2
    assert M.eer(genuine, impostor).eer < 0.1
    for s in set(spk):  # every voice: its own two utterances are closer than any other voice's
        a, b = [f for f in files if f.parent.name == s][:2]
        assert speaker_judge.similarity(a, b) > max(
            speaker_judge.similarity(a, f) for f in files if f.parent.name != s and f.stem.endswith("_01")
        )


def test_resemblyzer_is_deterministic_and_rate_independent(speaker_judge, corpus_dir):
    import soundfile as sf

    from vconv.audio.io import resample

    path = corpus_dir / "flite_slt" / "flite_slt_02.wav"
    wav, sr = sf.read(path, dtype="float32")
    direct = speaker_judge.embed_wav(wav, sr)
    assert np.allclose(direct, speaker_judge.embed(path), atol=1e-6)
    assert M.cosine(direct, speaker_judge.embed_wav(resample(wav, sr, 22050), 22050)) > 0.99


def test_whisper_transcribes_the_fixture_voices(asr_judge, corpus_dir):
    files = sorted((corpus_dir / "flite_rms").glob("*.wav"))
    errors = [M.error_rates(f.with_suffix(".txt").read_text(), asr_judge.transcribe(f)) for f in files]
    corpus_cer = sum(e.char_errors for e in errors) / sum(e.chars for e in errors)
    # measured: 0.09 on flite_rms (0.11 over all 24 fixture files; synthetic voices, tiny.en)
    assert corpus_cer < 0.3, [asr_judge.transcribe(f) for f in files]


def test_dnsmos_prefers_speech_over_noise(corpus_dir):
    from vconv.evaluation.judges import QualityJudge

    judge = QualityJudge()
    speech = judge.score(corpus_dir / "flite_awb" / "flite_awb_03.wav")
    noise = judge.score_wav(np.random.default_rng(0).uniform(-1.5, 1.5, 2 * SR).astype(np.float32), SR)  # > 1: clipped
    assert 1.0 <= noise.ovrl < speech.ovrl - 1.0 <= 5.0  # measured: 1.1 vs 3.0
    assert all(1.0 <= v <= 5.0 for v in (speech.sig, speech.bak, speech.p808))


def test_missing_packages_name_the_install_command(monkeypatch):
    from vconv.evaluation import judges

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in {"resemblyzer", "speechmos", "faster_whisper"} else real(name, *a))
    for make in (judges.SpeakerJudge, judges.AsrJudge, judges.QualityJudge, judges.Judges.load):
        with pytest.raises(VconvError, match=r"pip install 'vconv\[eval\]'"):
            make()
    monkeypatch.setitem(sys.modules, "pyworld", None)  # makes `import pyworld` raise ImportError
    with pytest.raises(VconvError, match=r"pip install 'vconv\[eval\]'"):
        M.mel_cepstrum(voiced_signal(0.2), SR)
    monkeypatch.setitem(sys.modules, "parselmouth", None)
    with pytest.raises(VconvError, match=r"praat-parselmouth .*pip install 'vconv\[eval\]'"):
        P.f0_contour(voiced_signal(0.2), SR)


def test_pkg_resources_stand_in_is_temporary(monkeypatch):
    from vconv.evaluation import speaker_judge

    monkeypatch.delitem(sys.modules, "pkg_resources", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pkg_resources" else real(name, *a))
    with speaker_judge._pkg_resources_stand_in():
        import pkg_resources

        assert pkg_resources.get_distribution("numpy").version == np.__version__
    assert "pkg_resources" not in sys.modules
