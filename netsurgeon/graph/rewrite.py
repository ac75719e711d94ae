"""Edit helpers the passes share: the in-place safety check, erasing sites, and a site's report row.

Edits reach the user's model through :class:`~netsurgeon.graph.scoped.ScopedEditor` (smallest scope); an edit
made directly on a whole-model ``GraphModule`` (a user's own fx model) ends with
:func:`netsurgeon.graph.cleanup.finalize`.
"""

from __future__ import annotations

from torch import fx

from netsurgeon.errors import SurgeryError
from netsurgeon.graph.index import GraphIndex
from netsurgeon.graph.scoped import Edit, ScopedEditor
from netsurgeon.graph.sites import Site
from netsurgeon.report import SiteChange

__all__ = ["check_inplace_safe", "erase_sites", "site_change"]


def check_inplace_safe(index: GraphIndex, site: Site) -> None:
    """Refuse to edit an in-place activation whose input is read again later (fx does not model the aliasing).

    An in-place ReLU mutates its input; a consumer of that input running after the ReLU saw rectified
    values, and would see different values once the site is erased or made out of place.
    """
    if not site.inplace or site.kind == "nested":
        return
    node = index.site_node(site)
    source = node.args[0] if node.args else None
    if not isinstance(source, fx.Node):
        return
    if source.op == "placeholder":
        raise SurgeryError(
            f"site {site.label} rectifies the model input in place; netsurgeon will not edit it "
            "(the caller's tensor would change meaning)."
        )
    later = [u.name for u in source.users if u is not node and index.order[u] > index.order[node]]
    if later:
        raise SurgeryError(
            f"site {site.label} is in place and its input is read again afterwards by {', '.join(later)}; "
            "editing it would change those readers too, so netsurgeon refuses."
        )


def site_change(site: Site, edit: Edit, *, after: str = "", block: str = "") -> SiteChange:
    """The report row for an edit of ``site``: its label and description, what it became (``after``, by
    default the edit's ``became``), its basic module, and the scope the edit landed at."""
    return SiteChange(site=site.label, before=site.description, after=after or edit.became, block=block,
                      scope=edit.scope)


def erase_sites(editor: ScopedEditor, planned: list[tuple[str, Site]]) -> list[SiteChange]:
    """Erase ``(block name, site)`` pairs after checking every one first, so a refusal edits nothing.

    Each site is erased at its smallest scope (see :mod:`netsurgeon.graph.scoped`): an activation module
    called once becomes ``nn.Identity`` in place; a call of a shared module or a functional call is
    removed from the ``forward`` of the module that makes it.
    """
    for _, site in planned:
        check_inplace_safe(editor.index, site)
    return [site_change(site, editor.erase(site), block=block) for block, site in planned]
