"""torchrig's text plugin (``text/``): work in progress."""

import torchrig

plugin = torchrig.Plugin("text")
