"""What the model finds on generated worlds whose truth is known (docs/model.md, "Realistic worlds").

    python -m shopper_segments.model.worlds --seeds 42,1,2,3 [--users 20000] [--world calibrated]

For each seed: a month of the world (November 2019), its user features computed directly (the
pandas reference of user_features, so no dbt build is needed), the fit with the default settings,
and how it compares with the truth file: k, the verdict on structure, the adjusted Rand index
among the planted shoppers, how many archetypes are named after their own persona (by the segment
most of them land in), and the share of background shoppers in a persona-named segment.
`tests/pytest/test_worlds.py` checks the calibrated world at seed 42 with the same code.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.metrics import adjusted_rand_score

from ..generate import BACKGROUND, generate_events
from ..settings import project_dir
from . import params as model_params, reference_features, training

SEED_TABLES = ("segment_features", "segment_personas", "segment_persona_traits")  # the dbt seeds a fit reads


@dataclass
class WorldFit:
    model: training.FittedModel
    scored: pd.DataFrame  # eligible shoppers: user_id, segment_id, archetype (truth)

    @property
    def planted(self) -> pd.DataFrame:
        return self.scored[self.scored["archetype"] != BACKGROUND]

    @property
    def background(self) -> pd.DataFrame:
        return self.scored[self.scored["archetype"] == BACKGROUND]

    def personas(self) -> pd.Series:
        return self.model.segments.set_index("segment_id")["persona_key"]

    def archetype_ari(self) -> float:
        planted = self.planted
        return float(adjusted_rand_score(planted["archetype"], planted["segment_id"])) if len(planted) else float("nan")

    def majority_persona(self) -> pd.Series:
        """Archetype -> persona key of the segment most of its shoppers land in."""
        planted = self.planted
        return pd.crosstab(planted["archetype"], planted["segment_id"]).idxmax(axis=1).map(self.personas())

    def background_persona_share(self) -> float:
        """Share of background shoppers in a segment named after a persona."""
        return float((self.background["segment_id"].map(self.personas()) != "descriptive").mean())


def fit_world(folder: Path, users: int = 20_000, seed: int = 42, world: str = "calibrated",
              settings: model_params.FitSettings | None = None) -> WorldFit:
    """Generate a month of `world`, compute its features directly and fit the model on the eligible shoppers."""
    events = generate_events(folder, users=users, start="2019-11-01", days=30, seed=seed, progress=False, world=world)
    features = reference_features.user_features(reference_features.read_events(events.files),
                                                reference_features.marketing_days(project_dir()))
    settings = settings or model_params.FitSettings()
    eligible = features[features["events"] >= settings.min_events].sort_values("user_id").reset_index(drop=True)
    seeds = {name: pd.read_csv(project_dir() / "seeds" / f"{name}.csv") for name in SEED_TABLES}
    model = training.fit_model(eligible, seeds["segment_features"], seeds["segment_personas"],
                               seeds["segment_persona_traits"], settings, len(eligible))
    scored = pd.DataFrame({"user_id": eligible["user_id"], "segment_id": model.predict(eligible)})
    return WorldFit(model, scored.merge(pd.read_csv(events.truth_file), on="user_id"))


def summary_line(seed: int, fit: WorldFit) -> str:
    structure = fit.model.structure
    majority = fit.majority_persona()
    named = int((majority == majority.index).sum()) if len(majority) else 0
    return (f"seed {seed}: k={fit.model.n_segments} verdict={structure.verdict} "
            f"excess={structure.observed_silhouette - structure.null_silhouette:.3f} "
            f"ARI(planted)={fit.archetype_ari():.3f} named={named}/{len(majority)} "
            f"background in persona segments={fit.background_persona_share():.1%} "
            f"personas={', '.join(sorted(set(fit.personas()) - {'descriptive'})) or '-'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--world", choices=("calibrated", "no_segments"), default="calibrated")
    args = parser.parse_args(argv)
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            print(summary_line(seed, fit_world(Path(folder), args.users, seed, args.world)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
