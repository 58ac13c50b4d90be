import torchrig

plugin = torchrig.Plugin("text")
