"""fit.save / bayesmix.load: one file, exact round trips, and no code run on loading.

Two tiny posteriors (sleepstudy and Theoph, 2 chains x 50 draws) are sampled
once for the module; everything else is ML or reads those files.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bmx
from bayesmix.errors import ArgumentError, DataError, DataWarning, SingularFitWarning
from bayesmix.io import FORMAT_VERSION, FileFormatError

REPO = Path(__file__).resolve().parents[1]
THEOPH_PARAMS = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}
TINY = {"draws": 50, "tune": 50, "chains": 2, "random_seed": 1}


# --- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sleep():
    return bmx.load_dataset("sleepstudy")


@pytest.fixture(scope="module")
def theoph_model(theoph):
    return bmx.nlmm(
        "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
        theoph,
        params=THEOPH_PARAMS,
        cov={"Subject": "diagonal"},
    )


@pytest.fixture(scope="module")
def fits(sleep, theoph_model):
    """One result of each class, sampled once (about 15 s in a new process)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 100 draws are too few for the ESS check
        return {
            "ml": bmx.lmm("Reaction ~ Days + (Days | Subject)", sleep).fit(),
            "nlm": theoph_model.fit(method="ML"),
            "bayes": bmx.lmm("Reaction ~ Days + (1 | Subject)", sleep).sample(**TINY),
            "nlbayes": theoph_model.sample(**TINY),
        }


@pytest.fixture(scope="module")
def saved(fits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    paths = {}
    for name, fit in fits.items():
        paths[name] = folder / f"{name}.bmx"
        fit.save(paths[name])
    return paths


def outputs(fit, newdata: pd.DataFrame) -> dict:
    """What a user reads off a result; all must survive a round trip."""
    out = {
        "class": type(fit).__name__,
        "summary": str(fit.summary()),
        "fixef": fit.fixef(),
        "ranef": fit.ranef(),
        "varcorr": fit.varcorr(),
    }
    if hasattr(fit, "estimates"):
        out["predict"] = fit.predict(newdata)
        out["loglik"] = fit.loglik
    else:
        out["predict"] = fit.predict(newdata, kind="posterior_predictive", random_seed=7)
    return out


def assert_same_outputs(left: dict, right: dict) -> None:
    assert left["class"] == right["class"]
    assert left["summary"] == right["summary"]
    pd.testing.assert_frame_equal(left["fixef"], right["fixef"], check_exact=True)
    pd.testing.assert_frame_equal(left["varcorr"], right["varcorr"], check_exact=True)
    assert left["ranef"].keys() == right["ranef"].keys()
    for key in left["ranef"]:
        pd.testing.assert_frame_equal(left["ranef"][key], right["ranef"][key], check_exact=True)
    if isinstance(left["predict"], np.ndarray):
        np.testing.assert_array_equal(left["predict"], right["predict"])
        assert left["loglik"] == right["loglik"]
    else:
        pd.testing.assert_frame_equal(left["predict"], right["predict"], check_exact=True)


def newdata_for(name: str, sleep: pd.DataFrame, theoph: pd.DataFrame) -> pd.DataFrame:
    return (sleep if name in ("ml", "bayes") else theoph).iloc[::7]


# --- round trips --------------------------------------------------------------

FRESH_PROCESS = """
import pickle, sys, warnings
import bayesmix as bmx
sys.path.insert(0, {tests!r})
from test_io import outputs, newdata_for
warnings.simplefilter("ignore")
sleep, theoph = bmx.load_dataset("sleepstudy"), bmx.load_dataset("Theoph")
paths = pickle.loads(bytes.fromhex(sys.argv[1]))
found = {{name: outputs(bmx.load(path), newdata_for(name, sleep, theoph))
         for name, path in paths.items()}}
sys.stdout.buffer.write(pickle.dumps(found))
"""


def test_reload_in_a_fresh_process_gives_identical_results(fits, saved, sleep, theoph):
    script = FRESH_PROCESS.format(tests=str(REPO / "tests"))
    argument = pickle.dumps({k: str(v) for k, v in saved.items()}).hex()
    done = subprocess.run(
        [sys.executable, "-c", script, argument], cwd=REPO, capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    found = pickle.loads(done.stdout)  # our own subprocess's output: trusted
    assert set(found) == {"ml", "nlm", "bayes", "nlbayes"}
    for name, fit in fits.items():
        assert_same_outputs(outputs(fit, newdata_for(name, sleep, theoph)), found[name])


def test_loaded_results_keep_their_model_and_posterior(fits, saved, sleep):
    ml = bmx.load(saved["ml"])
    assert ml.estimates.theta_names == fits["ml"].estimates.theta_names
    np.testing.assert_array_equal(ml.estimates.b_cond_var[0], fits["ml"].estimates.b_cond_var[0])
    refit = ml.update(". ~ . - Days")  # the rebuilt model supports update()
    assert refit.design.fixed_terms == ("Intercept",)
    bayes = bmx.load(saved["bayes"])
    for group in ("posterior", "sample_stats", "log_likelihood"):
        assert group in bayes.idata.children
    original = fits["bayes"].idata["posterior"]
    for name, values in original.data_vars.items():
        np.testing.assert_array_equal(bayes.idata["posterior"][name].values, values.values)
    assert dict(bayes.priors) == dict(fits["bayes"].priors)
    assert bayes.timing == fits["bayes"].timing and bayes.sampler == "nutpie"
    nlbayes = bmx.load(saved["nlbayes"])
    assert nlbayes.model.params == THEOPH_PARAMS
    pd.testing.assert_frame_equal(nlbayes.coef()["Subject"], fits["nlbayes"].coef()["Subject"])


@pytest.mark.parametrize("name", ["bayes", "nlbayes"])
def test_results_without_their_model_are_rebuilt_from_the_design(fits, tmp_path, name):
    """A result sampled without lmm()/nlmm() records its model from its design."""
    result = dataclasses.replace(fits[name], model=None)
    result.save(tmp_path / "f.bmx")
    back = bmx.load(tmp_path / "f.bmx")
    assert str(back.summary()) == str(result.summary())


def test_the_file_records_versions_and_layout(saved):
    with zipfile.ZipFile(saved["nlm"]) as archive:
        meta = json.loads(archive.read("bayesmix.json"))
        names = set(archive.namelist())
    assert meta["format"] == "bayesmix-fit" and meta["format_version"] == FORMAT_VERSION
    assert meta["bayesmix_version"] == bmx.__version__
    assert meta["result_class"] == "NLMResult"
    assert meta["model"]["params"] == THEOPH_PARAMS and meta["model"]["mean"] is None
    assert {"data/frame.parquet", "check/mean.npy", "result/estimates/beta.npy"} <= names


# --- what is stored of the model ----------------------------------------------


def test_functions_are_required_by_name_and_checked(sleep, tmp_path):
    def shift(x):
        return x + 1.0

    model = bmx.lmm(
        "Reaction ~ log(shift(Days)) + (1 | Subject)", sleep, functions={"shift": shift}
    )
    path = tmp_path / "f.bmx"
    model.fit().save(path)
    with pytest.raises(ArgumentError, match=r"calls 'shift'.*functions=\{'shift': shift\}"):
        bmx.load(path)
    with pytest.raises(ArgumentError, match="does not use"):
        bmx.load(path, functions={"shift": shift, "other": abs})
    with pytest.raises(ArgumentError, match="not the saved one"):
        bmx.load(path, functions={"shift": lambda x: x + 2.0})
    back = bmx.load(path, functions={"shift": shift})
    np.testing.assert_array_equal(back.predict(sleep), model.fit().predict(sleep))


def test_python_mean_is_required_again(orange, tmp_path):
    def logistic(xp, age, Asym, xmid, scal):
        return Asym / (1 + xp.exp((xmid - age) / scal))

    start = {"Asym": 190, "xmid": 700, "scal": 350}
    params = {"Asym": "1 + (1 | Tree)", "xmid": "1", "scal": "1"}
    fit = bmx.nlmm("circumference", orange, params=params, start=start, mean=logistic).fit()
    fit.save(tmp_path / "f.bmx")
    with pytest.raises(ArgumentError, match=r"mean is the Python function 'logistic'"):
        bmx.load(tmp_path / "f.bmx")
    with pytest.raises(ArgumentError, match="not the saved one"):
        bmx.load(tmp_path / "f.bmx", mean=lambda xp, age, Asym, xmid, scal: Asym + 0 * age)
    back = bmx.load(tmp_path / "f.bmx", mean=logistic)
    assert back.model.start == start
    np.testing.assert_array_equal(back.predict(orange), fit.predict(orange))


def test_offset_and_weights_keep_their_form(sleep, tmp_path):
    data = sleep.assign(w=np.linspace(0.5, 2.0, len(sleep)), off=np.arange(len(sleep)) / 10)
    for offset in ("off", data["off"].to_numpy()):
        fit = bmx.lmm("Reaction ~ Days + (1 | Subject)", data, offset=offset, weights="w").fit()
        fit.save(tmp_path / "f.bmx")
        back = bmx.load(tmp_path / "f.bmx")
        assert back.model.weights == "w"
        if isinstance(offset, str):
            assert back.model.offset == "off"
            np.testing.assert_array_equal(back.predict(data[:9]), fit.predict(data[:9]))
        else:
            np.testing.assert_array_equal(back.model.offset, offset)
        np.testing.assert_array_equal(back.predict(), fit.predict())


def test_linear_results_without_their_model_keep_offsets_and_functions(sleep, tmp_path):
    """Without ``result.model`` the arguments are read off the design, arrays included."""

    def shift(x):
        return x + 1.0

    data = sleep.assign(w=np.linspace(0.5, 2.0, len(sleep)))
    offset = np.arange(len(sleep)) / 10
    model = bmx.lmm(
        "Reaction ~ log(shift(Days)) + (1 | Subject)",
        data,
        offset=offset,
        weights="w",
        functions={"shift": shift},
    )
    fit = dataclasses.replace(model.fit(), model=None)
    fit.save(tmp_path / "f.bmx")
    back = bmx.load(tmp_path / "f.bmx", functions={"shift": shift})
    np.testing.assert_array_equal(back.model.offset, offset)
    np.testing.assert_array_equal(back.design.weights, fit.design.weights)
    np.testing.assert_array_equal(back.predict(), fit.predict())
    assert str(back.summary()) == str(fit.summary())


def test_data_types_and_level_order_survive(sleep, tmp_path):
    data = sleep.assign(
        Subject=sleep["Subject"].cat.reorder_categories(sleep["Subject"].cat.categories[::-1]),
        dose=pd.Categorical(sleep["Days"] % 3, categories=[2, 0, 1], ordered=True),
        label=pd.Series(["a", None] * 90, dtype=object),
        count=pd.array([1, None] * 90, dtype="Int64"),
    )
    fit = bmx.lmm("Reaction ~ Days + dose + (1 | Subject)", data).fit()
    fit.save(tmp_path / "f.bmx")
    back = bmx.load(tmp_path / "f.bmx")
    pd.testing.assert_frame_equal(back.model.data, data, check_exact=True)
    assert back.model.data["dose"].cat.ordered
    assert back.design.blocks[0].levels == fit.design.blocks[0].levels
    assert back.design.fixed_terms == fit.design.fixed_terms


def test_unstorable_columns_are_dropped_or_refused(sleep, tmp_path):
    mixed = pd.Series([1, "a"] * 90, dtype=object)  # numbers and text: Parquet refuses it
    fit = bmx.lmm("Reaction ~ Days + (1 | Subject)", sleep.assign(note=mixed)).fit()
    with pytest.warns(DataWarning, match="'note' cannot be stored"):
        fit.save(tmp_path / "f.bmx")
    assert "note" not in bmx.load(tmp_path / "f.bmx").model.data.columns
    numbers = pd.Series([1, 2.5, 4] * 60, dtype=object)  # Parquet reads back None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        grouped = bmx.lmm("Reaction ~ Days + (1 | g)", sleep.assign(g=numbers)).fit()
    with pytest.raises(DataError, match="column\\(s\\) 'g' cannot be stored"):
        grouped.save(tmp_path / "g.bmx")
    assert not (tmp_path / "g.bmx").exists()


def test_data_changed_after_fitting_is_refused(sleep, tmp_path):
    data = sleep.copy()
    fit = bmx.lmm("Reaction ~ Days + (1 | Subject)", data).fit()
    data.loc[0, "Reaction"] += 1.0
    with pytest.raises(DataError, match="values of y differ.*Refit"):
        fit.save(tmp_path / "f.bmx")
    assert os.listdir(tmp_path) == []  # no partial or temporary file is left


def test_save_refuses_other_objects(tmp_path):
    from bayesmix.io import save

    with pytest.raises(ArgumentError, match="fitted result"):
        save({"not": "a fit"}, tmp_path / "f.bmx")


# --- loading runs no code -----------------------------------------------------


class _Trap:
    """Unpickling this creates ``path``: proof that code from a file ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _rewrite(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """A copy of the zip ``source`` with some entries' bytes replaced (or added)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, replace.pop(name, old.read(name)))
        for name, data in replace.items():
            new.writestr(name, data)
    return target


def _pickled_npy(trap: _Trap) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([trap], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def test_a_pickle_is_refused_without_running(fits, saved, tmp_path):
    marker = tmp_path / "code-ran"
    trap = _Trap(marker)
    pickled = tmp_path / "fit.pkl"
    pickled.write_bytes(pickle.dumps(trap))
    with pytest.raises(FileFormatError, match="not a zip archive.*runs code"):
        bmx.load(pickled)
    cases = {  # pickles hidden where a bayesmix file holds arrays, JSON, netCDF, Parquet
        "array": (saved["ml"], "result/estimates/beta.npy", _pickled_npy(trap)),
        "check": (saved["ml"], "check/y.npy", _pickled_npy(trap)),
        "metadata": (saved["ml"], "bayesmix.json", pickle.dumps(trap)),
        "posterior": (saved["bayes"], "result/posterior.nc", pickle.dumps(trap)),
        "data": (saved["ml"], "data/frame.parquet", pickle.dumps(trap)),
    }
    for case, (source, entry, data) in cases.items():
        crafted = _rewrite(source, tmp_path / f"{case}.bmx", {entry: data})
        with pytest.raises(FileFormatError, match=entry.replace(".", r"\.")):
            bmx.load(crafted)
    assert not marker.exists()
    pickle.loads(pickle.dumps(trap))  # the trap works: unpickling it does create the file
    assert marker.exists()


def _with_metadata(source: Path, target: Path, edit) -> Path:
    with zipfile.ZipFile(source) as archive:
        meta = json.loads(archive.read("bayesmix.json"))
    edit(meta)
    return _rewrite(source, target, {"bayesmix.json": json.dumps(meta).encode()})


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda m: m.update(format="other"), "not a bayesmix file"),
        (lambda m: m.update(format_version="1"), "no valid format_version"),
        (lambda m: m.update(result_class="os.system"), "unknown result class"),
        (lambda m: m["model"].update(formula=3), "model description is malformed"),
        (lambda m: m["model"].update({"class": "Evil"}), "model class 'Evil' is unknown"),
        (lambda m: m["data"].update(categorical=None), "data description is malformed"),
        (lambda m: m["result"]["estimates"].update(beta={"pickle": "x"}), "unknown value"),
        (lambda m: m["result"]["estimates"].update(extra=1), "fields \\['extra'\\]"),
        (lambda m: m["check"]["arrays"].update(y="check/none.npy"), "'check/none.npy' is miss"),
        (lambda m: m["check"]["structure"].update(fixed_terms=["a"]), "fixed terms differ"),
    ],
)
def test_malformed_metadata_is_refused(saved, tmp_path, edit, words):
    crafted = _with_metadata(saved["ml"], tmp_path / "f.bmx", edit)
    with pytest.raises(FileFormatError, match=words):
        bmx.load(crafted)


def test_malformed_priors_are_refused(saved, tmp_path):
    def edit(meta):
        meta["result"]["priors"]["sigma"] = {"family": "eval", "params": {}}

    with pytest.raises(FileFormatError, match="prior of 'sigma' is malformed"):
        bmx.load(_with_metadata(saved["bayes"], tmp_path / "f.bmx", edit))


def test_other_files_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Reaction ~ Days")
    with pytest.raises(FileFormatError, match="not a bayesmix file"):
        bmx.load(text)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(FileFormatError, match="without bayesmix.json"):
        bmx.load(tmp_path / "other.zip")
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as archive:
        archive.writestr("bayesmix.json", b"{not json")
    with pytest.raises(FileFormatError, match="not valid JSON"):
        bmx.load(tmp_path / "bad.zip")


@pytest.mark.parametrize(("version", "advice"), [(3, "upgrade bayesmix"), (0, "load it with")])
def test_other_format_versions_are_refused(saved, tmp_path, version, advice):
    crafted = _with_metadata(
        saved["ml"], tmp_path / "f.bmx", lambda m: m.update(format_version=version)
    )
    with pytest.raises(FileFormatError, match=f"format version {version} .*{advice}"):
        bmx.load(crafted)


# --- pickling -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["ml", "nlm", "bayes", "nlbayes"])
def test_results_pickle_and_deepcopy(fits, sleep, theoph, name):
    fit = fits[name]
    expected = outputs(fit, newdata_for(name, sleep, theoph))
    for copied in (pickle.loads(pickle.dumps(fit)), copy.deepcopy(fit)):
        assert_same_outputs(expected, outputs(copied, newdata_for(name, sleep, theoph)))


def test_expression_means_pickle(orange):
    params = {"Asym": "1 + (1 | Tree)", "xmid": "1", "scal": "1"}
    fit = bmx.nlmm(
        "circumference ~ Asym / (1 + exp((xmid - age) / scal))",
        orange,
        params=params,
        start={"Asym": 190, "xmid": 700, "scal": 350},
    ).fit()
    copied = pickle.loads(pickle.dumps(fit))
    np.testing.assert_array_equal(copied.predict(orange), fit.predict(orange))


def test_crafted_formula_and_deep_json_are_refused_without_running(saved, tmp_path):
    import builtins

    with zipfile.ZipFile(saved["ml"]) as archive:
        meta = json.loads(archive.read("bayesmix.json"))
    crafted = dict(meta, model=dict(meta["model"]))
    crafted["model"]["formula"] = (
        "Reaction ~ I(Days == I.__builtins__.__setitem__[Days]('pwned', 1)) + (1 | Subject)"
    )
    path = _rewrite(
        saved["ml"], tmp_path / "crafted.bmx", {"bayesmix.json": json.dumps(crafted).encode()}
    )
    with pytest.raises(FileFormatError):
        bmx.load(path)
    assert not hasattr(builtins, "pwned")
    deep = dict(meta, model=dict(meta["model"], weights="[" * 5000 + "]" * 5000))
    text = json.dumps(deep).replace('"' + "[" * 5000 + "]" * 5000 + '"', "[" * 5000 + "]" * 5000)
    path = _rewrite(saved["ml"], tmp_path / "deep.bmx", {"bayesmix.json": text.encode()})
    with pytest.raises(FileFormatError):
        bmx.load(path)


@pytest.mark.parametrize("name", ["ordered", "poly"])
def test_format_1_files_load_as_saved(name):
    """Files written by bayesmix before R's contrasts (tests/refs/io, saved by commit
    4a43ae9): an ordered factor keeps its treatment coding, and columns that are now
    spelt R's way (I(temp^3), poly(temp, 2)1) load with the saved numbers."""
    refs = Path(__file__).parent / "refs" / "io"
    expected = json.loads((refs / "v1_expected.json").read_text())[name]
    file = {"ordered": "v1_ordered_factor.bmx", "poly": "v1_poly_power.bmx"}[name]
    fit = bmx.load(refs / file)
    assert fit.loglik == expected["loglik"]
    np.testing.assert_array_equal(fit.fixef()["estimate"], expected["fixef"])
    renamed = [
        n.replace(" ** ", "^").replace("[0]", "1").replace("[1]", "2") for n in expected["names"]
    ]
    assert list(fit.fixef().index) == renamed
    assert fit.conventions == "lme4"  # what such files reported when they were saved
