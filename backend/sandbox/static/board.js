// The sandbox page around the widget: the pipeline board (drag a lead, or pick a stage from its
// menu: the simulated Kommo fires its real webhook at mailsync), the lead card with the widget's
// panel, the settings modal, and the simulated email platform with an "Unsubscribe" button.
(function (global, $) {
  'use strict';

  var S = global.SANDBOX;
  var H = global.KommoHost;
  var esc = H.esc;
  var WORDS = {
    en: {save: 'Save', cancel: 'Cancel', installed: 'Installed'},
    es: {save: 'Guardar', cancel: 'Cancelar', installed: 'Instalado'},
    pt: {save: 'Salvar', cancel: 'Cancelar', installed: 'Instalado'}
  }[S.lang] || {};
  var stages = [];
  var leads = {};
  var dragging = false;
  var cardWidget = null;
  var settingsWidget = null;
  var openLead = null;

  function api(method, url, body) {
    return $.ajax({url: url, type: method, dataType: 'json', contentType: 'application/json',
      data: body === undefined ? undefined : JSON.stringify(body), cache: false});
  }

  function money(n) {
    return '$' + Number(n || 0).toLocaleString('en-US');
  }

  function failed(xhr) {
    H.toast('error', {header: 'Sandbox', text: (xhr && xhr.responseText) || 'the request failed'});
  }

  // --- the pipeline board -----------------------------------------------------------------

  function stageName(id) {
    var stage = stages.filter(function (s) { return s.id === id; })[0];
    return stage ? stage.name : String(id);
  }

  function moveMenu(lead) {
    return '<select class="sbx-move" data-sandbox="move" aria-label="Move to stage">' +
      '<option value="">Move to…</option>' + stages.filter(function (s) { return s.id !== lead.status_id; })
      .map(function (s) { return '<option value="' + s.id + '">' + esc(s.name) + '</option>'; }).join('') +
      '</select>';
  }

  function leadCard(lead) {
    var c = lead.contact || {};
    var tags = (c.tags || []).map(function (t) { return '<span class="sbx-tag">' + esc(t) + '</span>'; }).join('');
    return '<article class="sbx-lead" draggable="true" data-sandbox="lead" data-lead="' + lead.id + '">' +
      '<a href="#" class="sbx-lead__name" data-sandbox="open-lead">' + esc(lead.name) + '</a>' +
      '<div class="sbx-lead__who">' + esc(c.name || '') + (lead.company ? ' · ' + esc(lead.company) : '') + '</div>' +
      '<div class="sbx-lead__mail">' + esc(c.email || '') + '</div>' +
      '<div class="sbx-lead__foot"><span class="sbx-lead__price">' + money(lead.price) + '</span>' + tags +
      moveMenu(lead) + '</div></article>';
  }

  function renderBoard(data) {
    stages = data.pipeline.stages;
    leads = {};
    data.leads.forEach(function (l) { leads[l.id] = l; });
    $('#sbx-pipeline-name').text(data.pipeline.name);
    $('#sbx-board').html(stages.map(function (s) {
      var mine = data.leads.filter(function (l) { return l.status_id === s.id; });
      var total = mine.reduce(function (sum, l) { return sum + (l.price || 0); }, 0);
      return '<section class="sbx-col" data-sandbox="stage" data-stage="' + s.id + '">' +
        '<header class="sbx-col__head" style="border-bottom-color:' + esc(s.color) + '">' +
        '<div class="sbx-col__name">' + esc(s.name) + '</div>' +
        '<div class="sbx-col__sum">' + mine.length + ' leads · ' + money(total) + '</div></header>' +
        '<div class="sbx-col__body">' + mine.map(leadCard).join('') + '</div></section>';
    }).join(''));
  }

  function loadBoard() {
    if (dragging || $('#sbx-board .sbx-move:focus').length) {
      return $.Deferred().resolve().promise();
    }
    return api('GET', '/sandbox/api/board').then(renderBoard);
  }

  function move(leadId, statusId) {
    return api('POST', '/sandbox/api/leads/' + leadId + '/stage', {status_id: statusId}).then(function (answer) {
      var codes = answer.deliveries.map(function (d) { return d.status; });
      H.toast(codes.length && codes.every(function (c) { return c === 200; }) ? 'info' : 'error', {
        header: '“' + answer.lead.name + '” → ' + stageName(statusId),
        text: codes.length ? 'Kommo sent the stage-change webhook to mailsync (HTTP ' + codes.join(', ') + ').'
          : 'No webhook is subscribed: mailsync was not told.'});
      loadBoard();
      if (openLead === leadId) {
        showLead(leadId);
      }
    }, failed);
  }

  function bindBoard() {
    var $board = $('#sbx-board');
    $board.on('change', '[data-sandbox="move"]', function () {
      var id = Number($(this).closest('[data-lead]').attr('data-lead'));
      if (this.value) { move(id, Number(this.value)); }
    });
    $board.on('click', '[data-sandbox="open-lead"]', function (e) {
      e.preventDefault();
      openCard(Number($(this).closest('[data-lead]').attr('data-lead')));
    });
    $board.on('dragstart', '.sbx-lead', function (e) {
      dragging = true;
      e.originalEvent.dataTransfer.setData('text/plain', $(this).attr('data-lead'));
      $(this).addClass('sbx-lead_dragging');
    });
    $board.on('dragend', '.sbx-lead', function () {
      dragging = false;
      $(this).removeClass('sbx-lead_dragging');
      $('.sbx-col').removeClass('sbx-col_over');
    });
    $board.on('dragover', '.sbx-col', function (e) {
      e.preventDefault();
      $(this).addClass('sbx-col_over');
    });
    $board.on('dragleave', '.sbx-col', function () { $(this).removeClass('sbx-col_over'); });
    $board.on('drop', '.sbx-col', function (e) {
      e.preventDefault();
      dragging = false;
      var id = Number(e.originalEvent.dataTransfer.getData('text/plain'));
      var stage = Number($(this).attr('data-stage'));
      if (id && leads[id] && leads[id].status_id !== stage) { move(id, stage); }
    });
  }

  // --- the lead card ----------------------------------------------------------------------

  function showLead(id) {
    return api('GET', '/sandbox/api/leads/' + id).then(function (lead) {
      var c = lead.contact || {};
      $('#sbx-card-title').text(lead.name);
      $('#sbx-card-stage:not(:focus)').html(stages.map(function (s) {
        return '<option value="' + s.id + '"' + (s.id === lead.status_id ? ' selected' : '') + '>' +
          esc(s.name) + '</option>';
      }).join(''));
      $('#sbx-card-fields').html(
        '<dt>Budget</dt><dd>' + money(lead.price) + '</dd>' +
        '<dt>Contact</dt><dd>' + esc(c.name || '—') + '</dd>' +
        '<dt>Email</dt><dd data-sandbox="card-email">' + esc(c.email || '—') + '</dd>' +
        '<dt>Company</dt><dd>' + esc(lead.company || '—') + '</dd>' +
        '<dt>Tags</dt><dd data-sandbox="card-tags">' + ((c.tags || []).map(function (t) {
          return '<span class="sbx-tag">' + esc(t) + '</span>';
        }).join(' ') || '—') + '</dd>');
      $('#sbx-card-notes').html(lead.notes.length ? lead.notes.map(function (n) {
        return '<li class="sbx-note" data-sandbox="note"><span class="sbx-note__when">' +
          new Date(n.created_at * 1000).toLocaleString() + ' · ' + (n.entity === 'leads' ? 'lead' : 'contact') +
          ' note</span>' + esc(n.text) + '</li>';
      }).join('') : '<li class="sbx-note sbx-note_empty">No notes yet. mailsync adds one when the contact opts out at the email platform.</li>');
      return lead;
    });
  }

  function openCard(id) {
    closeCard();
    openLead = id;
    $('#sbx-card').prop('hidden', false);
    $('#sbx-card-widgets').empty();
    showLead(id).then(function (lead) {
      H.openCard('leads', id, {id: id, name: lead.name, status_id: lead.status_id, price: lead.price});
      return H.create('lcard');
    }).then(function (widget) { cardWidget = widget; }, function (error) {
      H.toast('error', {header: 'The widget did not load', text: String(error && error.message || error)});
    });
  }

  function closeCard() {
    if (cardWidget && cardWidget.callbacks.destroy) { cardWidget.callbacks.destroy(); }
    cardWidget = null;
    openLead = null;
    H.closeCard();
    $('#sbx-card').prop('hidden', true);
    $('#sbx-card-widgets').empty();
  }

  // --- the settings modal -----------------------------------------------------------------

  function openSettings() {
    var langs = H.langs() || {};
    $('#sbx-settings').prop('hidden', false);
    var $right = $('#sbx-settings-right');
    $right.find('#mailsync_custom_content').empty();
    $right.find('input[name="mapping"]').val('');
    H.create('settings').then(function (widget) {
      settingsWidget = widget;
      var l = H.langs() || langs;
      var w = l.widget || {};
      $('#sbx-settings-name').text(w.name || 'mailsync');
      $('#sbx-settings-descr').html(String(w.description || '').replace(/#HOST#/g, global.location.host)
        .replace(/#SUBDOMAIN#/g, S.account.subdomain).replace(/#ACCOUNT_ID#/g, S.account.id));
      $right.find('input[name="mapping"]').val((widget.get_settings() || {}).mapping || '');
      widget.callbacks.settings($right);
    }, function (error) {
      H.toast('error', {header: 'The widget did not load', text: String(error && error.message || error)});
    });
  }

  function closeSettings() {
    if (settingsWidget && settingsWidget.callbacks.destroy) { settingsWidget.callbacks.destroy(); }
    settingsWidget = null;
    $('#sbx-settings').prop('hidden', true);
  }

  function save() {
    if (!settingsWidget) { return; }
    var evt = {active: 'Y', fields: {mapping: $('#sbx-settings-right input[name="mapping"]').val()}};
    var $button = $('#sbx-settings .js-widget-save').prop('disabled', true);
    Promise.resolve(settingsWidget.callbacks.onSave(evt)).then(function (ok) {
      if (ok === false) { return; }
      H.saveSettings({mapping: evt.fields.mapping});
      closeSettings();
      H.toast('info', {header: 'mailsync', text: 'Settings saved.'});
    }, function (error) {
      global.APP.notifications.show_message_error({header: 'mailsync',
        text: (error && error.message) || String(error)});
    }).then(function () { $button.prop('disabled', false); });
  }

  // --- the simulated email platform -------------------------------------------------------

  var espTab = null;

  function members(list, kind, listId) {
    if (!list.length) { return '<li class="sbx-member sbx-member_empty">nobody yet</li>'; }
    return list.map(function (m) {
      var active = m.status === 'active' || m.status === 'subscribed';
      return '<li class="sbx-member" data-sandbox="member" data-email="' + esc(m.email) + '">' +
        '<span class="sbx-member__mail">' + esc(m.email) + '</span>' +
        '<span class="sbx-status sbx-status_' + esc(m.status) + '" data-sandbox="member-status">' + esc(m.status) + '</span>' +
        (active ? '<button type="button" class="sbx-link" data-sandbox="unsubscribe" data-kind="' + kind +
          '" data-list="' + esc(listId || '') + '">Unsubscribe</button>' : '') + '</li>';
    }).join('');
  }

  function segmentBlock(title, list, kind, listId, hook) {
    return '<div class="sbx-segment" data-sandbox="' + hook + '" data-name="' + esc(title) + '">' +
      '<div class="sbx-segment__name">' + esc(title) + ' <span class="sbx-count">' + list.length + '</span></div>' +
      '<ul>' + members(list, kind, listId) + '</ul></div>';
  }

  function renderEsp(data) {
    espTab = espTab || data.connected || 'mailerlite';
    $('[data-sandbox="esp-tab"]').each(function () {
      var kind = $(this).attr('data-kind');
      $(this).toggleClass('sbx-tab_on', kind === espTab)
        .find('.sbx-connected').toggle(kind === data.connected);
    });
    var html;
    if (espTab === 'mailerlite') {
      html = data.mailerlite.segments.map(function (g) {
        return segmentBlock(g.name, g.members, 'mailerlite', '', 'segment');
      }).join('') + segmentBlock('Not in any group', data.mailerlite.ungrouped, 'mailerlite', '', 'ungrouped');
    } else {
      html = data.mailchimp.audiences.map(function (a) {
        return '<div class="sbx-audience" data-sandbox="audience" data-list="' + esc(a.id) + '"><h4>Audience: ' +
          esc(a.name) + (a.id === data.list_id ? ' <span class="sbx-connected">used by mailsync</span>' : '') + '</h4>' +
          a.segments.map(function (t) { return segmentBlock('Tag: ' + t.name, t.members, 'mailchimp', a.id, 'segment'); }).join('') +
          segmentBlock('No tags', a.ungrouped, 'mailchimp', a.id, 'ungrouped') + '</div>';
      }).join('');
    }
    $('#sbx-esp').html(html);
  }

  function loadEsp() {
    return api('GET', '/sandbox/api/esp').then(renderEsp);
  }

  function bindEsp() {
    $('[data-sandbox="esp-tab"]').on('click', function () {
      espTab = $(this).attr('data-kind');
      loadEsp();
    });
    $('#sbx-esp').on('click', '[data-sandbox="unsubscribe"]', function () {
      var $b = $(this).prop('disabled', true);
      var email = $b.closest('[data-email]').attr('data-email');
      api('POST', '/sandbox/api/esp/unsubscribe', {kind: $b.attr('data-kind'), email: email,
        list_id: $b.attr('data-list')}).then(function (answer) {
        H.toast('info', {header: email + ' unsubscribed',
          text: answer.deliveries.length ? 'The platform told mailsync (HTTP ' + answer.deliveries.join(', ') + ').'
            : 'No webhook is registered yet: connect this platform in the mailsync settings first.'});
        loadEsp();
      }, failed);
    });
  }

  // --- start --------------------------------------------------------------------------------

  $(function () {
    $('.js-widget-save .button-input-inner__text').text(WORDS.save || 'Save');
    $('[data-sandbox="settings-cancel"]').text(WORDS.cancel || 'Cancel');
    $('[data-sandbox="settings-installed"]').text(WORDS.installed || 'Installed');
    $('#sbx-lang').val(S.lang).on('change', function () {
      global.location.search = '?lang=' + encodeURIComponent(this.value);
    });
    $('[data-sandbox="open-settings"]').on('click', openSettings);
    $('[data-sandbox="settings-close"], [data-sandbox="settings-cancel"]').on('click', closeSettings);
    $('#sbx-settings .js-widget-save').on('click', save);
    $('[data-sandbox="card-close"]').on('click', closeCard);
    $('#sbx-card-stage').on('change', function () { move(openLead, Number(this.value)); });
    $(document).on('keydown', function (e) {
      if (e.key === 'Escape') { closeCard(); closeSettings(); }
    });
    $('[data-sandbox="copy"]').on('click', function () {
      var text = $(this).siblings('code').text();
      if (global.navigator.clipboard) { global.navigator.clipboard.writeText(text); }
      H.toast('info', {header: 'Copied', text: 'Paste it into the API key field of the mailsync settings.'});
    });
    bindBoard();
    bindEsp();
    loadBoard();
    loadEsp();
    H.load();  // fetch the widget early: the first Settings click opens at once
    setInterval(function () {
      loadEsp();
      loadBoard();
      if (openLead) { showLead(openLead); }
    }, 2000);
  });
})(window, window.jQuery);
