# This module takes no inputs on purpose: its values are constants shared with k8s/base.
