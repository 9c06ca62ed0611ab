"""A template optodfa driver (registered as ``template-opu``)."""

from optodfa_template.driver import TemplateDevice, build

__all__ = ["TemplateDevice", "build"]
