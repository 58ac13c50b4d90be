"""torchrig's audio plugin (``audio/``): work in progress."""

import torchrig

plugin = torchrig.Plugin("audio")
