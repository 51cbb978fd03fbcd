"""Metadata for the bundled datasets: shape, origin and factor level orders.

CSV files lose R's factor level order, so every factor column is listed here
with the rule that restores it:

* an explicit tuple of levels, where R's order is neither alphabetical nor
  numeric (nlme ``groupedData`` grouping factors, which R orders by the
  largest response in each group, and a few treatment factors);
* ``None``, meaning R's default for ``factor()``: levels that all look like
  integers are ordered numerically (R built those factors from integer
  codes), anything else in sorted string order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class DatasetInfo:
    """Description of one bundled dataset.

    Attributes
    ----------
    name : str
        Name accepted by :func:`bayesmix.datasets.load_dataset` (R's name).
    file : str
        File name inside ``bayesmix/datasets/data``.
    rows, columns : int
        Shape of the data frame.
    source : str
        R package the data ship with (``lme4``, ``nlme`` or ``datasets``).
    description : str
        One-line description.
    factors : dict
        Factor column -> explicit level tuple, or ``None`` for R's default order.
    ordered : tuple of str
        Factor columns that are ordered factors in R (nlme's grouping factors,
        cake's ``temperature``...): they load as ordered categoricals, so a
        formula codes them with polynomial contrasts as R does.
    """

    name: str
    file: str
    rows: int
    columns: int
    source: str
    description: str
    factors: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    ordered: tuple[str, ...] = ()


def _levels(*levels: str) -> tuple[str, ...]:
    return tuple(levels)


_ENTRIES = (
    DatasetInfo(
        "sleepstudy",
        "sleepstudy.csv",
        180,
        3,
        "lme4",
        "Reaction time (ms) by days of sleep deprivation for 18 subjects.",
        {"Subject": None},
    ),
    DatasetInfo(
        "Arabidopsis",
        "Arabidopsis.csv",
        625,
        8,
        "lme4",
        "Fruit counts of Arabidopsis plants under nutrient and clipping treatments.",
        # gen, rack and nutrient stay integer columns, as in R; analyses
        # convert them to factors explicitly.
        {
            "reg": None,
            "popu": None,
            "amd": _levels("clipped", "unclipped"),
            "status": _levels("Normal", "Petri.Plate", "Transplant"),
        },
    ),
    DatasetInfo(
        "Dyestuff",
        "Dyestuff.csv",
        30,
        2,
        "lme4",
        "Dyestuff yield for 5 preparations from each of 6 batches.",
        {"Batch": None},
    ),
    DatasetInfo(
        "Penicillin",
        "Penicillin.csv",
        144,
        3,
        "lme4",
        "Inhibition-zone diameter for 6 penicillin samples crossed with 24 plates.",
        {"plate": None, "sample": None},
    ),
    DatasetInfo(
        "Pastes",
        "Pastes.csv",
        60,
        4,
        "lme4",
        "Paste strength: 2 assays per cask, 3 casks per batch, 10 batches.",
        {"batch": None, "cask": None, "sample": None},
    ),
    DatasetInfo(
        "cake",
        "cake.csv",
        270,
        5,
        "lme4",
        "Breakage angle of chocolate cakes by recipe and baking temperature.",
        {"replicate": None, "recipe": None, "temperature": None},
    ),
    DatasetInfo(
        "cbpp",
        "cbpp.csv",
        56,
        4,
        "lme4",
        "Bovine pleuropneumonia cases by herd and period (binomial counts).",
        {"herd": None, "period": None},
    ),
    DatasetInfo(
        "InstEval",
        "InstEval.csv.gz",
        73421,
        7,
        "lme4",
        "ETH Zurich lecture ratings (1-5) of lecturers d by students s.",
        {
            "s": None,
            "d": None,
            "studage": None,
            "lectage": None,
            "service": None,
            # R's order of the department codes (neither numeric nor alphabetical)
            "dept": _levels(
                "15", "5", "10", "12", "6", "7", "4", "8", "9", "14", "1", "3", "11", "2"
            ),
        },
    ),
    DatasetInfo(
        "Orthodont",
        "Orthodont.csv",
        108,
        4,
        "nlme",
        "Pituitary-pterygomaxillary distance (mm) of 27 children at ages 8-14.",
        {
            # R's stored order, copied from the reference fits: by mean distance
            # within sex (males first), ties in an order no simple rule gives.
            "Subject": _levels(
                "M16",
                "M05",
                "M02",
                "M11",
                "M07",
                "M08",
                "M03",
                "M12",
                "M13",
                "M14",
                "M09",
                "M15",
                "M06",
                "M04",
                "M01",
                "M10",
                "F10",
                "F09",
                "F06",
                "F01",
                "F05",
                "F07",
                "F02",
                "F08",
                "F03",
                "F04",
                "F11",
            ),
            "Sex": _levels("Male", "Female"),
        },
    ),
    DatasetInfo(
        "Oxboys",
        "Oxboys.csv",
        234,
        4,
        "nlme",
        "Heights (cm) of 26 Oxford boys on 9 occasions.",
        {
            "Subject": _levels(
                "10",
                "26",
                "25",
                "9",
                "2",
                "6",
                "7",
                "17",
                "16",
                "15",
                "8",
                "20",
                "1",
                "18",
                "5",
                "23",
                "11",
                "21",
                "3",
                "24",
                "22",
                "12",
                "13",
                "14",
                "19",
                "4",
            ),
            "Occasion": None,
        },
    ),
    DatasetInfo(
        "Machines",
        "Machines.csv",
        54,
        3,
        "nlme",
        "Productivity scores of 6 workers on 3 machine brands.",
        {"Worker": _levels("6", "2", "4", "1", "3", "5"), "Machine": None},
    ),
    DatasetInfo(
        "Ovary",
        "Ovary.csv",
        308,
        3,
        "nlme",
        "Number of large ovarian follicles in 11 mares over the estrus cycle.",
        {"Mare": _levels("4", "2", "11", "7", "5", "9", "1", "6", "10", "3", "8")},
    ),
    DatasetInfo(
        "BodyWeight",
        "BodyWeight.csv",
        176,
        4,
        "nlme",
        "Body weight (g) of 16 rats on 3 diets over 64 days.",
        {
            "Rat": _levels(
                "2",
                "3",
                "4",
                "1",
                "8",
                "5",
                "6",
                "7",
                "11",
                "9",
                "10",
                "12",
                "13",
                "15",
                "14",
                "16",
            ),
            "Diet": None,
        },
    ),
    DatasetInfo(
        "Theoph",
        "Theoph.csv",
        132,
        5,
        "datasets",
        "Theophylline serum concentration over 25 h in 12 subjects.",
        {"Subject": _levels("6", "7", "8", "11", "3", "2", "4", "9", "12", "10", "1", "5")},
    ),
    DatasetInfo(
        "Orange",
        "Orange.csv",
        35,
        3,
        "datasets",
        "Trunk circumference (mm) of 5 orange trees by age.",
        {"Tree": _levels("3", "1", "5", "2", "4")},
    ),
    DatasetInfo(
        "Loblolly",
        "Loblolly.csv",
        84,
        3,
        "datasets",
        "Height (ft) of loblolly pines from 14 seed sources at ages 3-25.",
        {
            "Seed": _levels(
                "329",
                "327",
                "325",
                "307",
                "331",
                "311",
                "315",
                "321",
                "319",
                "301",
                "323",
                "309",
                "303",
                "305",
            )
        },
    ),
    DatasetInfo(
        "ChickWeight",
        "ChickWeight.csv",
        578,
        4,
        "datasets",
        "Body weight (g) of chicks on 4 protein diets from birth to day 21.",
        {
            # By largest weight within diet, diets in order 1-4.
            "Chick": _levels(
                "18",
                "16",
                "15",
                "13",
                "9",
                "20",
                "10",
                "8",
                "17",
                "19",
                "4",
                "6",
                "11",
                "3",
                "1",
                "12",
                "2",
                "5",
                "14",
                "7",
                "24",
                "30",
                "22",
                "23",
                "27",
                "28",
                "26",
                "25",
                "29",
                "21",
                "33",
                "37",
                "36",
                "31",
                "39",
                "38",
                "32",
                "40",
                "34",
                "35",
                "44",
                "45",
                "43",
                "41",
                "47",
                "49",
                "46",
                "50",
                "42",
                "48",
            ),
            "Diet": None,
        },
    ),
    DatasetInfo(
        "Indometh",
        "Indometh.csv",
        66,
        3,
        "datasets",
        "Plasma indometacin concentration in 6 subjects after injection.",
        {"Subject": _levels("1", "4", "2", "5", "6", "3")},
    ),
    DatasetInfo(
        "Puromycin",
        "Puromycin.csv",
        23,
        3,
        "datasets",
        "Reaction rate against substrate concentration, cells treated with Puromycin or not.",
        {"state": _levels("treated", "untreated")},
    ),
    DatasetInfo(
        "DNase",
        "DNase.csv",
        176,
        3,
        "datasets",
        "Optical density of an ELISA assay of DNase against concentration, 11 runs.",
        {"Run": _levels("10", "11", "9", "1", "4", "8", "5", "7", "6", "2", "3")},
    ),
    DatasetInfo(
        "CO2",
        "CO2.csv",
        84,
        5,
        "datasets",
        "CO2 uptake of 12 grass plants (Quebec, Mississippi; chilled or not) by concentration.",
        {
            "Plant": _levels(
                "Qn1", "Qn2", "Qn3", "Qc1", "Qc3", "Qc2", "Mn3", "Mn2", "Mn1", "Mc2", "Mc3", "Mc1"
            ),
            "Type": _levels("Quebec", "Mississippi"),
            "Treatment": _levels("nonchilled", "chilled"),
        },
    ),
)

#: Factor columns that R stores as ordered factors (``is.ordered``), checked
#: against R by tests/refs/rfidelity/formulas/datasets_factors.json.
_ORDERED: dict[str, tuple[str, ...]] = {
    "cake": ("temperature",),
    "InstEval": ("studage", "lectage"),
    "Orthodont": ("Subject",),
    "Oxboys": ("Subject", "Occasion"),
    "Machines": ("Worker",),
    "Ovary": ("Mare",),
    "BodyWeight": ("Rat",),
    "Theoph": ("Subject",),
    "Orange": ("Tree",),
    "Loblolly": ("Seed",),
    "ChickWeight": ("Chick",),
    "Indometh": ("Subject",),
    "DNase": ("Run",),
    "CO2": ("Plant",),
}

CATALOG: dict[str, DatasetInfo] = {
    entry.name: replace(entry, ordered=_ORDERED.get(entry.name, ())) for entry in _ENTRIES
}
