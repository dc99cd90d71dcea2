# fairseq's import_user_module imports every module of this folder (and registers the model).
