"""binlearn: robust spatial representations from binaural audio by feature distillation.

The Python API mirrors the command line::

    from binlearn import SimConfig, simulate, pretrain, finetune, evaluate, doa
    simulate("data", SimConfig(clips=400, seed=0))          # binlearn simulate data --clips 400
    pretrain("data", "pre.pt")                              # binlearn pretrain data --out pre.pt
    finetune("data", "doa.pt", init="pre.pt")               # binlearn finetune data --out doa.pt --init pre.pt
    evaluate("data", ["doa.pt"], out_dir="results")         # binlearn evaluate data --model doa.pt --out results
    doa(["talker.wav"])                                     # binlearn doa talker.wav

Conventions: 16 kHz internally; channel 0 = left ear, 1 = right ear; azimuth in degrees, 0 = ahead,
positive = listener's left (counter-clockwise from above, as SOFA/AES69); elevation 0 = horizontal plane.
"""

__version__ = "0.1.0"

from .evaluate import evaluate  # noqa: E402
from .features import FeatureConfig, input_features, target_features  # noqa: E402
from .hrtf import SofaHRTF, SphericalHead, load_hrtf  # noqa: E402
from .infer import Localiser, doa  # noqa: E402
from .model import DistillModel, DoAModel, ModelConfig  # noqa: E402
from .room import binaural_rir  # noqa: E402
from .simulate import SimConfig, simulate  # noqa: E402
from .train import TrainConfig, finetune, pretrain  # noqa: E402

__all__ = ["SimConfig", "simulate", "TrainConfig", "pretrain", "finetune", "evaluate", "doa", "Localiser",
           "FeatureConfig", "input_features", "target_features", "ModelConfig", "DistillModel", "DoAModel",
           "SphericalHead", "SofaHRTF", "load_hrtf", "binaural_rir"]
