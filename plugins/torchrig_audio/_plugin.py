import torchrig

plugin = torchrig.Plugin("audio")
