/* Tabs for the integration console. No reload between tabs: panels are shown and hidden, so the
   form keeps everything typed. The tab holding a validation error is marked and opened first. */
(function () {
  "use strict";
  var TABS = [
    ["authentication", "Authentication"],
    ["details", "Details"],
    ["mapping", "Mapping"],
    ["activity", "Activity"]
  ];

  function init() {
    var form = document.getElementById("integration_form");
    if (!form) { return; }
    var first = form.querySelector("[class*='tab-']");
    if (!first) { return; }
    var storageKey = "integration-console-tab:" + window.location.pathname;
    var nav = document.createElement("div");
    nav.className = "console-tabs";
    nav.setAttribute("role", "tablist");
    first.parentNode.insertBefore(nav, first);

    var panels = {};
    var buttons = {};
    var anchor = nav;
    TABS.forEach(function (tab) {
      var name = tab[0];
      var members = form.querySelectorAll(".tab-" + name);
      if (!members.length) { return; }
      var panel = document.createElement("div");
      panel.className = "console-panel";
      panel.id = "tab-" + name;
      panel.setAttribute("role", "tabpanel");
      anchor.parentNode.insertBefore(panel, anchor.nextSibling);
      anchor = panel;
      members.forEach(function (el) {
        // An inline's fieldset moves with its wrapper, which Django's inlines.js works on.
        var group = el.closest(".inline-group");
        panel.appendChild(group || el);
      });
      panels[name] = panel;

      var button = document.createElement("button");
      button.type = "button";
      button.setAttribute("role", "tab");
      button.id = "tab-button-" + name;
      button.dataset.tab = name;
      button.textContent = tab[1];
      button.addEventListener("click", function () { show(name, true); });
      nav.appendChild(button);
      buttons[name] = button;
      if (panel.querySelector(".errorlist, .errors")) {
        button.classList.add("has-error");
        button.textContent = tab[1] + " \u26a0";
        button.title = "This tab has an error";
      }
    });

    function show(name, remember) {
      Object.keys(panels).forEach(function (key) {
        panels[key].hidden = key !== name;
        buttons[key].setAttribute("aria-selected", key === name ? "true" : "false");
      });
      if (remember) {
        try { window.sessionStorage.setItem(storageKey, name); } catch (e) { /* private mode */ }
        if (window.history.replaceState) { window.history.replaceState(null, "", "#tab-" + name); }
      }
    }

    var errored = Object.keys(buttons).filter(function (key) { return buttons[key].classList.contains("has-error"); });
    var fromHash = (window.location.hash || "").replace("#tab-", "");
    // A search or another page of mapping rows (a GET of the page with its parameters) is the Mapping tab.
    if (!panels[fromHash] && /[?&]mapping_(q|page)=/.test(window.location.search)) { fromHash = "mapping"; }
    var stored = null;
    try { stored = window.sessionStorage.getItem(storageKey); } catch (e) { stored = null; }
    var initial = errored[0] || (panels[fromHash] && fromHash) || (panels[stored] && stored) || Object.keys(panels)[0];
    show(initial, false);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
