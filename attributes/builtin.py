"""The four attributes of the paper, registered through the same hook a third-party package uses."""

from fsx.attributes.expression import expression
from fsx.attributes.identity import identity
from fsx.attributes.pose import pose
from fsx.attributes.style import style
from fsx.plugins.hookspecs import hookimpl


@hookimpl
def fsx_register_attributes():
    return [pose(), identity(), expression(), style()]
