"""netsurgeon: surgery on trained convolutional networks.

Load a trained timm or torchvision model, rewrite it with torch.fx passes from published papers,
verify, and export it with its provenance::

    import netsurgeon as ns
    model = ns.load_model("torchvision:resnet50", checkpoint="resnet50.pth")
    result = ns.apply(model, ns.EraseReLU())
    print(result.report.format())
    ns.export(result.model, "out/")
"""

from netsurgeon.api import SurgeryResult, apply, plan
from netsurgeon.compare import compare
from netsurgeon.errors import NetsurgeonError, NoEffectWarning, RecipeError, TrainingInterrupted
from netsurgeon.export import export, verify_artifact
from netsurgeon.graph.inspect import inspect_model
from netsurgeon.layers import PDReLU, SpinalHead
from netsurgeon.loading import load_model
from netsurgeon.models.info import get_info
from netsurgeon.passes import EraseReLU, GradientRectifiedFC, ProportionalReLU, PseudoDerivativeReLU, SpinalHeadConfig
from netsurgeon.plugins import load_plugins
from netsurgeon.recipe import Recipe
from netsurgeon.registry import get_pass, list_passes, register_pass

__version__ = "0.1.0"

__all__ = [
    "EraseReLU",
    "GradientRectifiedFC",
    "NetsurgeonError",
    "NoEffectWarning",
    "PDReLU",
    "ProportionalReLU",
    "PseudoDerivativeReLU",
    "Recipe",
    "RecipeError",
    "SpinalHead",
    "SpinalHeadConfig",
    "SurgeryResult",
    "TrainingInterrupted",
    "apply",
    "compare",
    "export",
    "get_info",
    "get_pass",
    "inspect_model",
    "list_passes",
    "load_model",
    "plan",
    "register_pass",
    "verify_artifact",
]

load_plugins()  # installed packages' passes and data kinds (netsurgeon.plugins entry points), in every process
