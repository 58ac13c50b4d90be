import torchrig

plugin = torchrig.Plugin("vision")
