"""Where a project keeps its state, and the names of its shared files and locks.

Shared by the modules of :mod:`loopml.project`, so none has to import another
for a folder name.
"""

STATE_DIR = ".loopml"
ASSETS_DIR = "assets"  # files every report shares (plotly.js), under STATE_DIR
BATCH_TAG = "loopml.batch"  # the runs one `loopml run` compared share it
API_KEY_ENV = "LOOPML_API_KEY"  # overrides .loopml/serve/api_key
API_KEY_FILE = ("serve", "api_key")  # under STATE_DIR; mode 0600
SERVE_DIR = "serve"  # under STATE_DIR: the API key and the prediction log
PREDICTION_LOG = "predictions.db"
MONITOR_REPORT = "monitor.html"  # under STATE_DIR/SERVE_DIR: the last monitor
DEPLOY_LOCK = "deploy"  # deploy and rollback move the aliases one at a time
