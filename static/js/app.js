// The site's only script of its own (the CSP allows no inline script).
// Below 768 px the navigation folds behind a Menu button; this shows the button and
// opens or closes the links, keeping aria-expanded true to what is on screen.
(function () {
  "use strict";
  function setUp() {
    var button = document.querySelector("[data-nav-toggle]");
    var links = button && document.getElementById(button.getAttribute("aria-controls"));
    if (!links) return;
    button.hidden = false;
    document.documentElement.classList.add("nav-folds");
    button.addEventListener("click", function () {
      var open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      links.classList.toggle("is-open", open);
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
