"""Pictures that load: local pictures are published under base_url, and nothing else is."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from fakes.editions import T, edition_of
from PIL import Image
from test_web import serving

from digest import media
from digest.config import Settings
from digest.models import Edition, Story
from digest.render import render
from digest.web import create_app


def _edition(*image_urls: str) -> Edition:
    return edition_of(
        [
            Story(
                url=f"https://news.example.org/{n}", title=f"Story {n}", published_at=T, image_url=u
            )
            for n, u in enumerate(image_urls, start=1)
        ]
    )


def test_local_pictures_are_published_and_server_files_are_not(
    settings: Settings, newsroom: Path, tmp_path: Path
) -> None:
    picture = newsroom / "examples/sample-newsroom/images/logo.png"
    disguised = tmp_path / "secrets.png"  # a picture's name, not a picture's bytes
    disguised.write_text("DIGEST_SECRET_KEY=hunter2\n")
    out = render(
        settings,
        _edition(picture.as_uri(), "file:///etc/passwd", disguised.as_uri(), "ftp://x/y.png"),
    )
    published = sorted(media.media_dir(settings).iterdir())
    # The logo (the same file) and the lead's picture: one published copy, by its bytes.
    assert len(published) == 1
    with Image.open(published[0]) as copy, Image.open(picture) as original:
        assert copy.size == original.size and copy.tobytes() == original.tobytes()
    name = published[0].name
    assert f'src="{settings.base_url}/media/{name}"' in out.html
    assert "file:" not in out.html and "/etc/passwd" not in out.html
    assert "hunter2" not in out.html and "secrets" not in out.html
    assert "ftp:" not in out.html


def test_digest_web_serves_published_pictures_only(settings: Settings, newsroom: Path) -> None:
    render(settings, _edition((newsroom / "examples/sample-newsroom/images/logo.png").as_uri()))
    (name,) = [p.name for p in media.media_dir(settings).iterdir()]
    shutil.copy(settings.path, media.media_dir(settings) / "digest.toml")  # not ours to serve
    with serving(create_app(settings)) as site, httpx.Client(base_url=site) as client:
        answer = client.get(f"/media/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/png"
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        for wrong in ("digest.toml", "..%2Fdigest.toml", name.upper(), name[:-4] + ".svg"):
            assert client.get(f"/media/{wrong}").status_code == 404, wrong


@pytest.mark.parametrize("logo", ["/etc/passwd", "file:///etc/hostname", "javascript:alert(1)"])
def test_a_logo_that_is_no_picture_on_the_web_is_a_settings_error(
    settings: Settings, logo: str
) -> None:
    from digest import config
    from digest.errors import ConfigError

    text = settings.path.read_text(encoding="utf-8")
    start = text.index("logo_url = ")
    end = text.index("\n", start)
    settings.path.write_text(text[:start] + f'logo_url = "{logo}"' + text[end:], encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[newsroom\] logo_url"):
        config.load(settings.path, env={"DIGEST_SECRET_KEY": "x"})


def test_a_copy_with_a_picture_off_the_web_is_never_rendered(settings: Settings) -> None:
    from digest.render import RenderError, check_html
    from digest.tokens import Tokens

    tokens = Tokens("00112233aabbccdd")
    page = '<html><body><img src="{}"><a href="{}">u</a></body></html>'
    assert (
        check_html(page.format("https://cdn.example/a.jpg", tokens.unsubscribe_url), tokens) == []
    )
    for source in ("file:///srv/newsroom/a.jpg", "/images/a.jpg", "data:image/png;base64,AAAA"):
        with pytest.raises(RenderError, match="not an absolute http"):
            check_html(page.format(source, tokens.unsubscribe_url), tokens)


def test_a_camera_original_is_published_email_sized_without_its_metadata(
    settings: Settings, tmp_path: Path
) -> None:
    original = tmp_path / "harbor.jpg"
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x8825] = {2: (58.0, 18.0, 0.0), 4: (134.0, 25.0, 0.0)}  # GPS: Juneau
    Image.new("RGB", (4000, 3000), (20, 90, 160)).save(original, "JPEG", exif=exif, quality=95)
    out = render(settings, _edition(original.as_uri(), original.as_uri()))
    names = re.findall(
        rf'src="{re.escape(settings.base_url)}/media/([0-9a-f]{{32}}\.jpg)"', out.html
    )
    assert len(set(names)) == 2, names  # the lead's size and the thumbnail's
    widths = set()
    for name in set(names):
        path = media.media_dir(settings) / name
        with Image.open(path) as copy:
            widths.add(copy.size)
            assert not copy.getexif() and "exif" not in copy.info
        assert path.stat().st_size < original.stat().st_size / 4
    assert widths == {(media.LEAD_WIDTH, 900), (media.THUMB_WIDTH, 270)}


def test_a_decompression_bomb_is_left_out(settings: Settings, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    # 20,000 x 20,000 pixels of one colour: a few hundred KB on disk, 1.2 GB decoded.
    Image.new("1", (20_000, 20_000)).save(bomb, "PNG")
    out = render(settings, _edition(bomb.as_uri()))
    # Only the logo is published; the lead goes without a picture.
    (logo,) = media.media_dir(settings).iterdir()
    assert out.html.count("/media/") == 1 and logo.name in out.html
