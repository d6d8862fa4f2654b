from fairray.cli import app

app()
