"""Entry point of the web app (also the Hugging Face Spaces ``app_file``)."""

from umm.ui.main import main

if __name__ == "__main__":
    main()
