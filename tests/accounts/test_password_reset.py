import re

import pytest
from django.core import mail
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_password_reset_by_email_lets_the_user_log_in_with_the_new_password(client, admin):
    response = client.post(reverse("password_reset"), {"email": "Admin@acme.test"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [admin.email]
    link = re.search(r"https?://[^/]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)

    # Django swaps the token for a session marker on the first visit, then shows the form.
    form_page = client.get(link, follow=True)
    assert b"Choose a new password" in form_page.content
    new_password = "a-much-better-passphrase-42"
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": new_password, "new_password2": new_password},
    )
    assert done.status_code == 302

    assert client.login(username=admin.email, password=new_password)
    # The link works once.
    assert b"This link no longer works" in client.get(link, follow=True).content


def test_unknown_address_gets_the_same_answer_and_no_mail(client):
    response = client.post(reverse("password_reset"), {"email": "nobody@acme.test"})
    assert response.status_code == 302
    assert mail.outbox == []
